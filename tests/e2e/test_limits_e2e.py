"""Every limit against the real daemon: what a client that hits it sees, and that others are unaffected."""

from __future__ import annotations

import selectors
import socket
import time

import pytest
import websocket

from tests.support.rawclient import (
    RawWebSocket,
    handshake_request,
    http_exchange,
    raise_fd_limit,
    read_until_closed,
    status_of,
)

ECHO = "wsdaemon.apps.echo:app"


@pytest.fixture(scope="module", autouse=True)
def _more_descriptors():
    raise_fd_limit(8192)


def wait_until(predicate, timeout: float = 10.0, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s")


# --- request head ------------------------------------------------------------------


def test_request_head_limits_answer_431_and_400(daemon_factory):
    d = daemon_factory("--max-header-bytes", "1024", "--max-headers", "10", app=ECHO)
    big = b"GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + b"a" * 2000 + b"\r\n\r\n"
    assert status_of(http_exchange(d.host, d.port, big)) == 431
    unfinished = b"GET / HTTP/1.1\r\nX-Big: " + b"a" * 2000  # no end of head in sight
    assert status_of(http_exchange(d.host, d.port, unfinished)) == 431
    many = b"GET / HTTP/1.1\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(11)) + b"\r\n"
    assert status_of(http_exchange(d.host, d.port, many)) == 431
    just_enough = b"GET /status HTTP/1.1\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(10)) + b"\r\n"
    assert status_of(http_exchange(d.host, d.port, just_enough.replace(b"HTTP/1.1", b"HTTP/1.0"))) == 200
    assert status_of(http_exchange(d.host, d.port, b"GET /\x01 HTTP/1.1\r\n\r\n")) == 400
    assert status_of(http_exchange(d.host, d.port, b"GET / HTTP/1.1\r\nBad Header: x\r\n\r\n")) == 400
    assert status_of(http_exchange(d.host, d.port, b"GET http://[::1 HTTP/1.1\r\n\r\n")) == 400
    assert status_of(http_exchange(d.host, d.port, b"GET / HTTP/2.0\r\n\r\n")) == 505
    ws = websocket.create_connection(d.url, timeout=5)
    ws.send("unaffected")
    assert ws.recv() == "unaffected"
    ws.close()
    assert "request header too large" in d.log()


def test_handshake_timeout_answers_408_to_a_partial_head_and_closes_a_silent_client(daemon_factory):
    d = daemon_factory("--handshake-timeout", "1", app=ECHO)
    with (
        socket.create_connection((d.host, d.port)) as partial,
        socket.create_connection((d.host, d.port)) as silent,
    ):
        start = time.monotonic()
        partial.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n")
        answer = read_until_closed(partial, timeout=10)
        took = time.monotonic() - start
        assert status_of(answer) == 408
        assert 0.9 < took < 5, took
        assert read_until_closed(silent, timeout=10) == b""
    assert "not complete within the handshake timeout" in d.log()


def test_slowloris_500_trickling_clients_while_normal_clients_are_served(daemon_factory):
    """500 clients trickle their request heads; others keep being served; the slow ones go at the timeout."""
    timeout = 3.0
    d = daemon_factory("--handshake-timeout", str(timeout), app=ECHO)
    sel = selectors.DefaultSelector()
    slow = []
    start = time.monotonic()
    for _ in range(500):
        s = socket.create_connection((d.host, d.port), timeout=10)
        s.setblocking(False)
        s.send(b"GET / HTTP/1.1\r\n")
        slow.append(s)
        sel.register(s, selectors.EVENT_READ)
    opened_in = time.monotonic() - start
    steady = websocket.create_connection(d.url, timeout=10)
    closed: dict[socket.socket, float] = {}
    answers: dict[socket.socket, bytes] = {}
    served = worst = 0.0
    served = 0
    n = 0
    while time.monotonic() - start < timeout + 8 and len(closed) < len(slow):
        # the slow clients: one more header byte each, then whatever the server said
        for s in slow:
            if s not in closed:
                try:
                    s.send(b"X")
                except (BlockingIOError, ConnectionError):
                    pass
        for key, _ in sel.select(0.2):
            s = key.fileobj
            try:
                data = s.recv(4096)
            except (BlockingIOError, ConnectionError):
                data = b""
            if data:
                answers[s] = answers.get(s, b"") + data
                continue
            closed[s] = time.monotonic() - start
            sel.unregister(s)
        # the normal clients: an echo on a kept connection, a new connection, a plain GET
        t0 = time.monotonic()
        steady.send(f"m{n}")
        assert steady.recv() == f"m{n}"
        fresh = websocket.create_connection(d.url, timeout=10)
        fresh.send("fresh")
        assert fresh.recv() == "fresh"
        fresh.close()
        assert status_of(http_exchange(d.host, d.port, b"GET /status HTTP/1.0\r\n\r\n")) == 200
        worst = max(worst, time.monotonic() - t0)
        served += 1
        n += 1
    steady.close()
    for s in slow:
        s.close()
    print(
        f"slowloris: opened in {opened_in:.2f}s, closed {min(closed.values()):.2f}..{max(closed.values()):.2f}s, served {served} rounds, worst {worst:.3f}s, 408s {sum(1 for a in answers.values() if a.startswith(b'HTTP/1.1 408'))}"
    )
    assert len(closed) == 500, f"{500 - len(closed)} slow clients still open"
    # none closed before the timeout (minus the time it took to open them), all soon after it
    assert min(closed.values()) >= timeout - opened_in - 0.5
    assert max(closed.values()) < timeout + opened_in + 3
    assert sum(1 for a in answers.values() if a.startswith(b"HTTP/1.1 408")) >= 450
    assert served >= 10
    assert worst < 3.0, f"a normal client waited {worst:.2f}s"
    assert d.alive()


# --- connections -------------------------------------------------------------------


def test_connection_limit_answers_503_and_recovers(daemon_factory):
    d = daemon_factory("--max-connections", "20", app=ECHO)
    held = [websocket.create_connection(d.url, timeout=5) for _ in range(12)]
    held_raw = [socket.create_connection((d.host, d.port)) for _ in range(8)]  # handshakes count too
    time.sleep(0.2)  # let the daemon accept the raw ones (nothing to wait for on our side)
    answer = http_exchange(d.host, d.port, b"GET /status HTTP/1.1\r\nHost: a\r\n\r\n")
    assert status_of(answer) == 503
    assert b"Retry-After: 1" in answer
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        websocket.create_connection(d.url, timeout=5)
    assert refused.value.status_code == 503
    for ws in held[:3]:
        ws.close()
    ws = wait_until(lambda: _try_connect(d.url), timeout=10)
    ws.send("in again")
    assert ws.recv() == "in again"
    for c in [ws, *held[3:]]:
        c.close()
    for s in held_raw:
        s.close()
    log = d.log()
    assert log.count("connection limit of 20 reached") == 1
    assert "below the connection limit again" in log


def _try_connect(url):
    try:
        return websocket.create_connection(url, timeout=5)
    except websocket.WebSocketBadStatusException:
        return None


def test_idle_timeout_closes_silent_clients_with_1001(daemon_factory):
    d = daemon_factory("--idle-timeout", "1", "--ping-interval", "0", app=ECHO)
    silent = RawWebSocket(d.host, d.port)
    talker = RawWebSocket(d.host, d.port)
    start = time.monotonic()
    for i in range(12):  # 3 s of chatter, 0.25 s apart
        talker.send_text(f"t{i}")
        assert talker.recv_frame() == (1, f"t{i}".encode())
        time.sleep(0.25)
    frames, close = silent.recv_until_close(timeout=10)
    assert close == (1001, "idle timeout")
    assert time.monotonic() - start < 6
    talker.send_text("still open")
    assert talker.recv_frame() == (1, b"still open")
    talker.close()
    silent.close()


def test_fragment_limit_closes_with_1009(daemon_factory):
    d = daemon_factory("--max-frames-per-message", "10", app=ECHO)
    ws = RawWebSocket(d.host, d.port)
    ws.send_frame(0x1, b"a", fin=False)
    for _ in range(8):
        ws.send_frame(0x0, b"b", fin=False)
    ws.send_frame(0x0, b"c", fin=True)  # 10 frames: fine
    assert ws.recv_frame() == (1, b"a" + b"b" * 8 + b"c")
    ws.send_frame(0x1, b"a", fin=False)
    for _ in range(10):
        ws.send_frame(0x0, b"b", fin=False)
    _, close = ws.recv_until_close()
    assert close == (1009, "message in more than 10 frames")
    ws.close()


def test_message_size_limit_closes_with_1009(daemon_factory):
    d = daemon_factory("--max-message-size", "1000", app=ECHO)
    ws = RawWebSocket(d.host, d.port)
    ws.send_frame(0x2, b"x" * 1000)
    assert ws.recv_frame() == (2, b"x" * 1000)
    ws.send_frame(0x2, b"x" * 600, fin=False)
    ws.send_frame(0x0, b"x" * 401)
    _, close = ws.recv_until_close()
    assert close[0] == 1009
    ws.close()


# --- header safety -----------------------------------------------------------------


def test_nothing_unvalidated_from_the_request_reaches_a_response_header(daemon_factory):
    d = daemon_factory(app="tests.support.e2e_app:app")
    # control characters anywhere in a head: 400, and the answer does not repeat them
    for bad in [
        b"Sec-WebSocket-Protocol: chat.v1\x0bX-Evil: 1",
        b"Origin: http://a.example\x0cX-Evil: 2",
        b"Host: a\rX-Evil: 3",
        b"X-Any: \x1b[31m",
    ]:
        request = handshake_request().replace(b"\r\n\r\n", b"\r\n" + bad + b"\r\n\r\n")
        answer = http_exchange(d.host, d.port, request)
        assert status_of(answer) == 400, bad
        assert b"Evil" not in answer and b"\x1b" not in answer
    # clean but hostile values: only validated tokens come back
    ws = RawWebSocket(
        d.host,
        d.port,
        "/%0d%0aX-Evil:%203",
        headers={"Sec-WebSocket-Protocol": "chat.v1 X-Evil: 4, <x>, chat.v2"},
    )
    assert ws.status == 101
    head = ws.head.decode("latin-1")
    assert "Evil" not in head
    assert "Sec-WebSocket-Protocol: chat.v2" in head  # the only clean token the app speaks
    ws.close()
    answer = http_exchange(d.host, d.port, b"GET /nowhere%0d%0aX-Evil:%205 HTTP/1.1\r\nHost: a\r\n\r\n")
    head, _, body = answer.partition(b"\r\n\r\n")
    assert status_of(answer) == 404 and b"Evil" not in head
    assert b"X-Content-Type-Options: nosniff" in head


# --- pipelining ----------------------------------------------------------------------


def _rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 1024


def test_pipelined_requests_wait_for_the_client_to_read_the_answers(daemon_factory):
    """Thousands of tiny pipelined GETs must not become megabytes of answers held in memory."""
    d = daemon_factory(app=ECHO)
    request = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"
    rss_start = _rss_mib(d.proc.pid)
    greedy = []
    for _ in range(5):  # each would be about 40 MiB of test pages if answered at once
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.connect((d.host, d.port))
        s.sendall(request * 9000)
        greedy.append(s)
    peak = rss_start
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        peak = max(peak, _rss_mib(d.proc.pid))
        time.sleep(0.05)
    assert peak - rss_start < 16, f"RSS grew from {rss_start:.0f} to {peak:.0f} MiB"
    # a client that reads gets every answer, in order
    last = b"GET /status HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
    with socket.create_connection((d.host, d.port), timeout=30) as s:
        s.sendall(request * 3000 + last)
        answer = read_until_closed(s, timeout=30, limit=1 << 30)
    assert answer.count(b"HTTP/1.1 200 OK") == 3001
    assert answer.rstrip().endswith(b"}")
    # one that never reads and keeps sending is dropped
    with socket.create_connection((d.host, d.port)) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        with pytest.raises(OSError):
            for _ in range(200):
                s.sendall(request * 2000)
    for s in greedy:
        s.close()
    assert "too many pipelined requests" in d.log()
