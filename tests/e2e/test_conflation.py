"""Conflated (keyed) and volatile sends against the real daemon, with a raw client that stops reading.

Keyed: the client asks for 100,000 keyed updates (sent over about 4 s) and reads
nothing for 5 s. It is not disconnected as a slow consumer, the daemon's RSS
stays within 16 MiB of where it started, and once it reads again the last state
it gets is the newest (followed by the unkeyed ``done``). The same volume of
unkeyed messages would be far over ``--max-write-buffer`` (1 MiB here).

Volatile: 20,000 volatile 1 KiB messages to a client that does not read: those
sent while it is backlogged are dropped (counted), the rest arrive in order, and
it stays connected.
"""

from __future__ import annotations

import json
import socket
import struct
import time

from tests.support.rawclient import MASK, handshake_request, read_head
from wsdaemon.proto.rfc6455 import encode_frame

APP = "tests.support.rooms_app:app"
LIMIT = 1024 * 1024
SLACK = 16 * 1024 * 1024


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


class Reader:
    """A raw RFC 6455 client with a small receive buffer and a frame parser that does not copy."""

    def __init__(self, d, path: str = "/") -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.connect((d.host, d.port))
        self.sock.sendall(handshake_request(path))
        head, rest = read_head(self.sock)
        assert head.startswith(b"HTTP/1.1 101"), head
        self.buf = bytearray(rest)
        self.pos = 0

    def send(self, text: str) -> None:
        self.sock.sendall(encode_frame(0x1, text.encode(), mask=MASK))

    def frames(self):
        """Complete frames in the buffer: (opcode, payload)."""
        buf = self.buf
        while True:
            n = len(buf) - self.pos
            if n < 2:
                break
            b0, b1 = buf[self.pos], buf[self.pos + 1]
            length, hdr = b1 & 0x7F, 2
            if length == 126:
                if n < 4:
                    break
                length, hdr = struct.unpack_from("!H", buf, self.pos + 2)[0], 4
            elif length == 127:
                if n < 10:
                    break
                length, hdr = struct.unpack_from("!Q", buf, self.pos + 2)[0], 10
            if n < hdr + length:
                break
            start = self.pos + hdr
            self.pos = start + length
            yield b0 & 0x0F, bytes(buf[start : start + length])
        del buf[: self.pos]
        self.pos = 0

    def read_until(self, done, timeout: float = 30.0) -> list[tuple[int, bytes]]:
        """Frames until ``done(opcode, payload)`` is true for one (included)."""
        out: list[tuple[int, bytes]] = []
        deadline = time.monotonic() + timeout
        self.sock.settimeout(1.0)
        while True:
            for frame in self.frames():
                out.append(frame)
                if done(*frame) or frame[0] == 0x8:
                    return out
            assert time.monotonic() < deadline, f"not done within {timeout} s; last {out[-3:]}"
            try:
                data = self.sock.recv(1 << 20)
            except TimeoutError:
                continue
            assert data, f"the server closed the connection; last frames {out[-3:]}"
            self.buf += data

    def close(self) -> None:
        self.sock.close()


def keyed_updates_while_not_reading(d, client: Reader, count: int = 100_000, size: int = 200) -> None:
    """Ask for ``count`` keyed updates, read nothing for 5 s, then check what arrives and the RSS."""
    time.sleep(0.3)
    rss_start = rss_peak = rss_bytes(d.proc.pid)
    client.send(f"keyed {count} state {size}")
    stop = time.monotonic() + 5.0
    while time.monotonic() < stop:  # not reading
        rss_peak = max(rss_peak, rss_bytes(d.proc.pid))
        time.sleep(0.05)
    assert count * size > 10 * LIMIT  # unkeyed, this would have been a slow consumer long ago
    frames = client.read_until(lambda op, payload: payload.startswith(b"done"))
    rss_peak = max(rss_peak, rss_bytes(d.proc.pid))
    frames = [f for f in frames if not f[1].startswith(b"!a")]  # a session's acks of our requests
    assert frames[-1] == (0x1, f"done {count}".encode()), frames[-1]
    states = [int(p[6:14]) for op, p in frames if op == 0x1 and p.startswith(b"state ")]
    fills = [p for op, p in frames if op == 0x1 and p.startswith(b"fill ")]
    assert fills and all(frames[i][1].startswith(b"fill ") for i in range(len(fills)))
    assert states[-1] == count - 1  # the newest state is the last one received
    assert states == sorted(states) and len(set(states)) == len(states)
    assert len(states) < 100, len(states)  # nearly all were replaced while waiting
    client.send("stats")
    ((_, stats),) = client.read_until(lambda op, payload: payload.startswith(b"stats"))[-1:]
    stats = json.loads(stats[6:])
    assert stats["replaced"] == count - len(states), stats
    assert rss_peak - rss_start < SLACK, (rss_start, rss_peak)


def test_keyed_updates_to_a_client_that_stops_reading(daemon_factory):
    d = daemon_factory("--max-write-buffer", str(LIMIT), "--ping-interval", "0", app=APP)
    client = Reader(d, "/?name=slow")
    keyed_updates_while_not_reading(d, client)
    client.close()


def test_volatile_messages_are_dropped_while_backlogged(daemon_factory):
    d = daemon_factory("--max-write-buffer", str(LIMIT), "--ping-interval", "0", app=APP)
    client = Reader(d, "/?name=volatile")
    count = 20_000
    client.send(f"volatile {count} 1024")
    time.sleep(5.0)  # not reading while the server sends
    frames = client.read_until(lambda op, payload: payload == b"volatile-done")
    got = [int(p[:8]) for op, p in frames if op == 0x1 and p != b"volatile-done"]
    assert got == sorted(got)
    assert 0 < len(got) < count
    client.send("stats")
    ((_, stats),) = client.read_until(lambda op, payload: payload.startswith(b"stats"))[-1:]
    stats = json.loads(stats[6:])
    assert stats["dropped"] == count - len(got), (stats, len(got))
    client.close()


def test_keyed_updates_to_a_session_that_stops_reading(daemon_factory):
    """The JS client's case: a resumable session over WebSocket. While its socket is backlogged the
    carrier takes nothing, the session keeps what the application sends and replaces keyed
    messages in place; when the client reads again they leave in order, the newest state last."""
    d = daemon_factory(
        "--max-write-buffer", str(LIMIT), "--resume-buffer", str(64 * LIMIT), "--ping-interval", "0", app=APP
    )
    client = Reader(d, "/?name=slow&wsdaemon_session=new")
    (hello,) = client.read_until(lambda op, payload: payload.startswith(b"!h"), timeout=10)
    assert json.loads(hello[1][2:])["next"] == 1
    keyed_updates_while_not_reading(d, client)  # its "keyed" request is message 1: numbers are implicit
    client.close()
