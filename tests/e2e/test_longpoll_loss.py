"""Poll responses cut mid-way lose nothing: every message arrives exactly once, in order."""

import json
import random
import socket
import struct

from tests.support.lp_helpers import Session

APP = "tests.support.lp_app:app"


def read_response_raw(sock: socket.socket, limit: int | None = None) -> tuple[bytes, bytes] | None:
    """Read one response; with ``limit``, stop after that many bytes and return None (a cut)."""
    data = b""
    while True:
        if limit is not None and len(data) >= limit:
            return None
        chunk = sock.recv(4096 if limit is None else min(4096, limit - len(data)))
        if not chunk:
            raise AssertionError(f"server closed after {len(data)} bytes")
        data += chunk
        head, sep, body = data.partition(b"\r\n\r\n")
        if sep:
            length = int(
                next(
                    line.split(b":")[1]
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
            )
            if len(body) >= length and limit is None:
                return head, body[:length]


def cut_poll(host: str, port: int, session_id: str, ack: int, cut_after: int) -> bool:
    """A poll whose response is cut after ``cut_after`` bytes by a reset; True if it was cut."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # so the server is still writing
    sock.settimeout(10)
    sock.connect((host, port))
    try:
        sock.sendall(f"GET /lp/{session_id}/poll?ack={ack} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        return read_response_raw(sock, limit=cut_after) is None
    finally:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()  # RST: whatever the server still sends is lost


def full_poll(sock: socket.socket, host: str, session_id: str, ack: int) -> dict:
    sock.sendall(f"GET /lp/{session_id}/poll?ack={ack} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    head, body = read_response_raw(sock)
    assert head.startswith(b"HTTP/1.1 200 "), head
    return json.loads(body)


def test_cut_poll_responses_lose_nothing(daemon_factory):
    d = daemon_factory(app=APP)
    rng = random.Random(20261125)
    s = Session(d)
    bursts, per_burst, size = 20, 20, 3000  # about 60 kB a burst
    expected = ["welcome long-polling"] + [
        f"{i:06d} " + "x" * size for _ in range(bursts) for i in range(per_burst)
    ]
    sent_bursts = 0
    cuts = full = 0
    poll_sock = socket.create_connection((d.host, d.port), timeout=10)
    while s.received < len(expected):
        queued = 1 + sent_bursts * per_burst
        if s.received == queued or (sent_bursts < bursts and rng.random() < 0.3):
            s.send(f"burst {per_burst} {size}")
            sent_bursts += 1
            continue
        # Something is queued: the poll is answered at once.
        if rng.random() < 0.7:
            cuts += cut_poll(d.host, d.port, s.id, s.received, rng.randint(1, 60000))
        else:
            s.take(full_poll(poll_sock, d.host, s.id, s.received))
            full += 1
        assert cuts + full < 500, "too many polls"
    poll_sock.close()
    texts = [m["text"] for m in s.messages]
    assert len(texts) == len(expected)
    assert texts == expected  # each once, in order
    assert [m["seq"] for m in s.messages] == list(range(1, len(expected) + 1))
    print(f"loss test: {len(expected)} messages, {cuts} polls cut, {full} complete")
    assert cuts >= 10, (cuts, full)
    assert d.alive()
    assert "Traceback" not in d.log()
    s.close_sockets()
