"""Slow consumers against the broadcast app: bounded memory, a documented close, nobody else starves.

200 clients never read while a producer floods 1 KiB messages that the daemon
relays to every connection. Each slow client's queue hits ``max_write_buffer``:
the daemon drops its queued messages, ends its stream with a 1008 "slow
consumer" close frame (on a frame boundary, readable whenever the client reads
again) and frees the buffer. Its RSS (sampled from /proc) stays under
``start + 200 x (max_write_buffer + one message) + slack``; 10 normal clients
receive every message in order.
"""

from __future__ import annotations

import selectors
import socket
import struct
import time

from tests.support.rawclient import MASK, handshake_request, raise_fd_limit, read_head
from wsdaemon.proto.rfc6455 import encode_frame

SLOW = 200
NORMAL = 10
MESSAGES = 6000
SIZE = 1024
LIMIT = 256 * 1024
WINDOW = 200  # messages the producer may be ahead of the slowest normal client
SLACK = 64 * 1024 * 1024


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def connect(d, rcvbuf: int | None = None) -> tuple[socket.socket, bytes]:
    s = socket.socket()
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.connect((d.host, d.port))
    s.sendall(handshake_request())
    head, rest = read_head(s)
    assert head.startswith(b"HTTP/1.1 101"), head
    return s, rest


class FrameCounter:
    """Parses server frames from a byte stream; checks the broadcast sequence numbers."""

    def __init__(self, initial: bytes = b"") -> None:
        self.buf = bytearray(initial)
        self.next_seq = 0
        self.close: tuple[int, str] | None = None

    def feed(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        pos = 0
        n = len(buf)
        while n - pos >= 2:
            b0, b1 = buf[pos], buf[pos + 1]
            length, hdr = b1 & 0x7F, 2
            if length == 126:
                if n - pos < 4:
                    break
                length, hdr = struct.unpack_from("!H", buf, pos + 2)[0], 4
            elif length == 127:
                if n - pos < 10:
                    break
                length, hdr = struct.unpack_from("!Q", buf, pos + 2)[0], 10
            if n - pos < hdr + length:
                break
            payload = bytes(buf[pos + hdr : pos + hdr + length])
            pos += hdr + length
            opcode = b0 & 0x0F
            assert self.close is None, "a frame after the close frame"
            if opcode == 0x8:
                self.close = (struct.unpack("!H", payload[:2])[0], payload[2:].decode())
            else:
                assert opcode == 0x1 and b0 & 0x80, f"unexpected frame {b0:#x}"
                seq = int(payload[:8])
                assert seq == self.next_seq, f"message {seq} where {self.next_seq} was due"
                assert len(payload) == SIZE
                self.next_seq += 1
        del buf[:pos]


def message(seq: int) -> bytes:
    return b"%08d" % seq + b"x" * (SIZE - 8)


def test_slow_consumers_are_closed_with_1008_and_memory_stays_bounded(daemon_factory):
    raise_fd_limit(4096)
    d = daemon_factory(
        "--max-write-buffer",
        str(LIMIT),
        "--close-timeout",
        "60",
        "--drop-grace",
        "60",  # the slow clients read only after the flood: their close frame must still be there
        "--ping-interval",
        "0",
        app="wsdaemon.apps.broadcast:app",
    )
    pid = d.proc.pid
    slow = [connect(d, rcvbuf=4096)[0] for _ in range(SLOW)]
    normal = []
    sel = selectors.DefaultSelector()
    for _ in range(NORMAL):
        s, rest = connect(d)
        s.setblocking(False)
        counter = FrameCounter(rest)
        normal.append((s, counter))
        sel.register(s, selectors.EVENT_READ, counter)
    producer = normal[0][0]
    time.sleep(0.3)  # settle before the baseline
    rss_start = rss_bytes(pid)
    rss_peak = rss_start
    sent = 0
    pending = b""
    start = time.monotonic()
    deadline = start + 120
    while time.monotonic() < deadline:
        slowest = min(c.next_seq for _, c in normal)
        if slowest >= MESSAGES:
            break
        # the producer: as fast as the server takes it, within the window
        while not pending and sent < MESSAGES and sent - slowest < WINDOW:
            pending = encode_frame(0x1, message(sent), mask=MASK)
            sent += 1
            try:
                n = producer.send(pending)
                pending = pending[n:]
            except BlockingIOError:
                pass
        if pending:
            try:
                n = producer.send(pending)
                pending = pending[n:]
            except BlockingIOError:
                pass
        for key, _ in sel.select(0.05):
            try:
                data = key.fileobj.recv(1 << 20)
            except BlockingIOError:
                continue
            assert data, "a normal client was disconnected"
            key.data.feed(data)
        if sent % 100 == 0:
            rss_peak = max(rss_peak, rss_bytes(pid))
    flood_time = time.monotonic() - start
    rss_peak = max(rss_peak, rss_bytes(pid))
    assert all(c.next_seq == MESSAGES for _, c in normal), [c.next_seq for _, c in normal]
    assert all(c.close is None for _, c in normal)

    # every slow client was dropped as a slow consumer (the daemon logs each)
    log = d.log()
    assert log.count("slow consumer") >= SLOW, log.count("slow consumer")

    # each slow client, reading now, gets whole frames in order, then the 1008 close frame
    closes = {}
    for s in slow:
        counter = FrameCounter()
        s.settimeout(10)
        while True:
            data = s.recv(1 << 20)
            if not data:
                break
            counter.feed(data)
        assert not counter.buf, "the stream ended inside a frame"
        closes[counter.close] = closes.get(counter.close, 0) + 1
        assert 0 < counter.next_seq < MESSAGES
        s.close()
    assert closes == {(1008, "slow consumer"): SLOW}, closes

    bound = rss_start + SLOW * (LIMIT + SIZE) + SLACK
    print(
        f"slow consumers: {MESSAGES} x {SIZE} B to {SLOW + NORMAL} clients in {flood_time:.1f}s;"
        f" RSS start {rss_start / 2**20:.1f} MiB, peak {rss_peak / 2**20:.1f} MiB,"
        f" bound {bound / 2**20:.1f} MiB"
    )
    assert rss_peak < bound
    for s, _ in normal:
        s.close()
