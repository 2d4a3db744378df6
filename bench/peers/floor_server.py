"""Yardstick: the least Python an epoll echo server can run per readiness (not a real server).

One ``select.epoll`` loop; per readable socket one ``recv``, wsdaemon's C frame scan, its C frame
builder and one ``send``, glibc's malloc tuned as wsdaemon tunes it. No limits, no timers, no
validation of the upgrade beyond finding its key, a close frame answered with 1000 and the socket
closed at once: what is left is what any Python server on this design pays (the calls into the
kernel and the interpreter's loop). Profiles (b) and (e) against it show how much of wsdaemon's
time per message and per handshake is wsdaemon's. Echo only; needs wsdaemon's C accelerator
built in this checkout.
"""

import base64
import hashlib
import select
import socket
import sys
from pathlib import Path

from common import MAX_SIZE, parse_args

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from wsdaemon.daemon.malloc_tuning import keep_large_buffers_in_heap  # noqa: E402
from wsdaemon.proto import _speedups  # noqa: E402

CLOSE_1000 = b"\x88\x02\x03\xe8"
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
RESPONSE = (
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: "
)


def upgrade(sock: socket.socket) -> bool:
    """Answer the upgrade request read in one piece; False when there is none."""
    request = sock.recv(65536)
    for line in request.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"sec-websocket-key":
            accept = base64.b64encode(hashlib.sha1(value.strip() + GUID).digest())
            sock.send(RESPONSE + accept + b"\r\n\r\n")
            return True
    return False


def serve(host: str, port: int) -> None:
    listener = socket.create_server((host, port), backlog=1024)
    listener.setblocking(False)
    epoll = select.epoll()
    epoll.register(listener.fileno(), select.EPOLLIN)
    opening: dict[int, socket.socket] = {}
    open_: dict[int, socket.socket] = {}
    pending: dict[int, bytes] = {}  # the start of a frame a read ended in
    scan, frame = _speedups.scan_frames, _speedups.message_frame

    def drop(fd: int, sock: socket.socket) -> None:
        epoll.unregister(fd)
        sock.close()

    while True:
        for fd, _ in epoll.poll(1.0, 4096):
            sock = open_.get(fd)
            if sock is not None:
                try:
                    data = sock.recv(262144)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if not data:
                    del open_[fd]
                    pending.pop(fd, None)
                    drop(fd, sock)
                    continue
                if pending and fd in pending:
                    data = pending.pop(fd) + data
                events: list = []
                pos = scan(data, 0, len(data) - 1, events, MAX_SIZE, True)
                if pos != len(data):
                    if data[pos] == 0x88:  # a close frame: answered with 1000, then the TCP close
                        events.append(None)
                        del open_[fd]
                    elif data[pos] not in (0x81, 0x82) or len(data) - pos > MAX_SIZE + 14:
                        del open_[fd]  # a fragment, a ping, an error: out of this yardstick's scope
                        drop(fd, sock)
                        continue
                    else:
                        pending[fd] = data[pos:]
                try:
                    if events and events[-1] is None:
                        events.pop()
                        sock.send(b"".join([frame(value) for _, value in events]) + CLOSE_1000)
                        drop(fd, sock)
                    elif len(events) == 1:  # the commonest read: one message, no list, no join
                        sock.send(frame(events[0][1]))
                    else:
                        sock.send(b"".join([frame(value) for _, value in events]))
                except OSError:
                    open_.pop(fd, None)
                    drop(fd, sock)
            elif fd == listener.fileno():
                while True:
                    try:
                        sock, _ = listener.accept()
                    except BlockingIOError:
                        break
                    sock.setblocking(False)
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    opening[sock.fileno()] = sock
                    epoll.register(sock.fileno(), select.EPOLLIN)
            else:
                sock = opening.pop(fd)
                try:
                    upgraded = upgrade(sock)
                except OSError:
                    upgraded = False
                if upgraded:
                    open_[fd] = sock
                else:
                    drop(fd, sock)


if __name__ == "__main__":
    args = parse_args(__doc__)
    if args.mode != "echo" or args.deflate:
        raise SystemExit("the floor yardstick has only an uncompressed echo")
    keep_large_buffers_in_heap(MAX_SIZE)  # as wsdaemon does: no mmap and page faults per 256 KiB recv
    serve(args.host, args.port)
