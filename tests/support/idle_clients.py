"""Many idle RFC 6455 clients in one process: ``python3 -m tests.support.idle_clients HOST PORT COUNT SRC``.

Opens ``COUNT`` connections from source address ``SRC`` (raw non-blocking sockets, the RFC 6455
handshake, at most ``IN_FLIGHT`` handshakes at once), prints ``open N`` once all are upgraded (or
``failed REASON``), holds them until a line or EOF on stdin, closes them all and prints ``closed``.
A separate process, because one process may hold only about 20,000 descriptors here.
"""

from __future__ import annotations

import selectors
import socket
import sys
import time

from tests.support.rawclient import handshake_request, raise_fd_limit

IN_FLIGHT = 400
#: How long opening every connection may take before the process gives up.
OPEN_TIMEOUT = 90.0
IP_BIND_ADDRESS_NO_PORT = 24


def open_idle(host: str, port: int, count: int, source: str) -> list[socket.socket]:
    """``count`` upgraded, idle WebSocket connections; raises on a refusal or after OPEN_TIMEOUT."""
    selector = selectors.DefaultSelector()
    done: list[socket.socket] = []
    pending: dict[socket.socket, bytearray] = {}
    started = 0
    deadline = time.monotonic() + OPEN_TIMEOUT
    request = handshake_request(host=f"{host}:{port}")
    while len(done) < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(done)} of {count} connections open after {OPEN_TIMEOUT:g} s")
        while started < count and len(pending) < IN_FLIGHT:
            sock = socket.socket()
            sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
            sock.bind((source, 0))
            sock.connect((host, port))  # blocking: loopback connects complete at once
            sock.sendall(request)
            sock.setblocking(False)
            pending[sock] = bytearray()
            selector.register(sock, selectors.EVENT_READ)
            started += 1
        for key, _ in selector.select(timeout=1.0):
            sock = key.fileobj
            data = sock.recv(4096)
            if not data:
                raise ConnectionError("closed during the handshake")
            buf = pending[sock]
            buf += data
            if b"\r\n\r\n" in buf:
                if not buf.startswith(b"HTTP/1.1 101"):
                    raise ConnectionError(f"handshake refused: {bytes(buf[:60])!r}")
                selector.unregister(sock)
                del pending[sock]
                done.append(sock)
    selector.close()
    return done


def main(argv: list[str]) -> int:
    host, port, count, source = argv[0], int(argv[1]), int(argv[2]), argv[3]
    raise_fd_limit(count + 64)
    try:
        socks = open_idle(host, port, count, source)
    except (OSError, TimeoutError) as exc:
        print(f"failed {exc}", flush=True)
        return 1
    print(f"open {len(socks)}", flush=True)
    sys.stdin.readline()
    for sock in socks:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        sock.close()  # RST: no TIME_WAIT left behind to use up the loopback ports
    print("closed", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
