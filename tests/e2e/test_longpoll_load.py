"""1,000 long-polling sessions with held polls do not slow the loop down."""

import http.client
import json
import resource
import selectors
import socket
import statistics
import time

import websocket

from tests.support.lp_helpers import request, wait_for

APP = "tests.support.lp_app:app"
SESSIONS = 1000


def raise_fd_limit(wanted: int) -> None:
    """Raise this process's descriptor limit (the daemon inherits it) to ``wanted``."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= wanted:
        return
    if hard != resource.RLIM_INFINITY and hard < wanted:
        raise AssertionError(f"RLIMIT_NOFILE hard limit {hard} is below the {wanted} this test needs")
    resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


def status(daemon) -> dict:
    conn = http.client.HTTPConnection(daemon.host, daemon.port, timeout=10)
    try:
        return request(conn, "GET", "/status")[2]
    finally:
        conn.close()


def test_thousand_held_polls_keep_websocket_echo_fast(daemon_factory):
    raise_fd_limit(4 * SESSIONS + 256)
    d = daemon_factory(app=APP)  # polls are held 25 s (the default)
    # Open the sessions over one keep-alive connection.
    conn = http.client.HTTPConnection(d.host, d.port, timeout=10)
    started = time.monotonic()
    ids = []
    for _ in range(SESSIONS):
        code, _, doc = request(conn, "POST", "/lp/open")
        assert code == 200
        ids.append(doc["session"])
    open_time = time.monotonic() - started
    conn.close()
    # One held poll per session, each on its own socket.
    socks = []
    started = time.monotonic()
    try:
        for sid in ids:
            sock = socket.create_connection((d.host, d.port), timeout=10)
            sock.sendall(f"GET /lp/{sid}/poll?ack=1 HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            socks.append(sock)
        wait_for(lambda: status(d)["long_polling"]["held_polls"] == SESSIONS, timeout=30)
        hold_time = time.monotonic() - started

        # The loop answers a WebSocket at once while the polls are held.
        ws = websocket.create_connection(d.url, timeout=10)
        assert ws.recv() == "welcome rfc6455"
        rtts = []
        for i in range(200):
            t = time.perf_counter()
            ws.send(f"echo {i}")
            assert ws.recv() == f"echo {i}"
            rtts.append(time.perf_counter() - t)
        # None of the held polls was answered meanwhile.
        sel = selectors.DefaultSelector()
        for sock in socks:
            sock.setblocking(False)
            sel.register(sock, selectors.EVENT_READ)
        assert sel.select(timeout=0) == []

        # A broadcast answers all 1,000 held polls; the echo stays fast meanwhile.
        started = time.monotonic()
        ws.send("broadcast to everyone")
        assert ws.recv() == "to everyone"
        answered: dict[socket.socket, bytes] = {}
        deadline = time.monotonic() + 30
        while len(answered) < SESSIONS and time.monotonic() < deadline:
            for key, _ in sel.select(timeout=1):
                data = key.fileobj.recv(65536)
                answered[key.fileobj] = answered.get(key.fileobj, b"") + data
                if data.endswith(b"]}"):
                    sel.unregister(key.fileobj)
        broadcast_time = time.monotonic() - started
        assert len(answered) == SESSIONS
        for data in answered.values():
            body = json.loads(data.partition(b"\r\n\r\n")[2])
            assert body["messages"] == [{"seq": 2, "text": "to everyone"}]
        t = time.perf_counter()
        ws.send("after")
        assert ws.recv() == "after"
        rtt_after = time.perf_counter() - t
        ws.close()
    finally:
        for sock in socks:
            sock.close()
    print(
        f"\n{SESSIONS} sessions: opened in {open_time:.2f} s, polls held after {hold_time:.2f} s; "
        f"WebSocket echo rtt median {statistics.median(rtts) * 1000:.2f} ms, max {max(rtts) * 1000:.2f} ms; "
        f"broadcast answered all polls in {broadcast_time * 1000:.0f} ms; echo after {rtt_after * 1000:.2f} ms"
    )
    assert max(rtts) < 0.25, rtts
    assert statistics.median(rtts) < 0.05
    assert broadcast_time < 10
    assert d.alive()
