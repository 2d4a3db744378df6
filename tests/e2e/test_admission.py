"""Admission against the real daemon: the metrics listener answers at --max-connections (and has a cap
of its own), and --max-connects-per-second refuses a client address's burst at accept with a 503 while
other addresses, and trusted proxies, are served; the refusals are counted in /metrics."""

from __future__ import annotations

import json
import socket
import time
import urllib.request

import websocket

from tests.support.daemon_process import free_port
from tests.support.lp_helpers import wait_for
from tests.support.metrics_scrape import scrape
from tests.support.rawclient import handshake_request, read_head, read_until_closed, status_of
from wsdaemon.metrics import METRICS_MAX_CONNECTIONS

STATUS = b"GET /status HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"


def refused(samples: dict, reason: str) -> float:
    return samples.get(("wsdaemon_connections_refused_total", (("reason", reason),)), 0.0)


def exchange(port: int, source: str = "127.0.0.1", request: bytes = STATUS) -> bytes:
    """One connection from ``source`` to 127.0.0.1:``port``: the whole answer to ``request``."""
    with socket.socket() as s:
        s.bind((source, 0))
        s.settimeout(10)
        s.connect(("127.0.0.1", port))
        s.sendall(request)
        return read_until_closed(s, timeout=10)


def test_the_metrics_listener_answers_at_the_connection_limit_and_has_its_own_cap(daemon_factory):
    admin_port = free_port()
    admin = f"http://127.0.0.1:{admin_port}"
    d = daemon_factory(
        "--max-connections", "20", "--metrics-listen", f"127.0.0.1:{admin_port}", "--ping-interval", "0"
    )
    d.wait_for_log(f"metrics and status on 127.0.0.1 port {admin_port}")
    held = [websocket.create_connection(d.url, timeout=10) for _ in range(20)]
    try:
        answer = exchange(d.port)  # the public port is full: even /status is refused there
        assert status_of(answer) == 503 and b"Retry-After: 1" in answer
        with urllib.request.urlopen(admin + "/status", timeout=10) as resp:
            assert resp.status == 200
            assert json.load(resp)["connections"] == 20
        samples = scrape(admin)  # prometheus_client's parser, and a 200 (urlopen raises otherwise)
        assert samples[("wsdaemon_connections", (("transport", "rfc6455"),))] == 20
        assert refused(samples, "limit") == 1

        # the metrics listener is bounded on its own: past its cap new connections are closed
        idle = [socket.create_connection(("127.0.0.1", admin_port)) for _ in range(METRICS_MAX_CONNECTIONS)]
        try:
            assert _closed_at_once(admin_port)  # accepted after the 16 (the backlog is in order)
            d.wait_for_log(f"metrics listener: {METRICS_MAX_CONNECTIONS} connections open")
        finally:
            for s in idle:
                s.close()
        wait_for(lambda: _scrape_or_none(admin))
        after = _scrape_or_none(admin)
        assert refused(after, "metrics_limit") >= 1
        assert refused(after, "limit") == 1  # the metrics listener's refusals are not max_connections'
        assert f"below its {METRICS_MAX_CONNECTIONS} connections again" in d.log()
    finally:
        for ws in held:
            ws.close()


def _closed_at_once(port: int) -> bool:
    """A new connection to the metrics listener is closed without an answer."""
    try:
        answer = exchange(port)
    except ConnectionError:
        return True
    return answer == b""


def _scrape_or_none(url: str) -> dict | None:
    try:
        return scrape(url)
    except (OSError, ConnectionError):
        return None


def test_a_burst_from_one_address_is_refused_at_accept_and_others_are_served(daemon_factory):
    admin_port = free_port()
    admin = f"http://127.0.0.1:{admin_port}"
    d = daemon_factory(
        "--max-connects-per-second", "2", "--max-connects-burst", "5",
        "--metrics-listen", f"127.0.0.1:{admin_port}",
    )  # fmt: skip
    d.wait_for_log(f"metrics and status on 127.0.0.1 port {admin_port}")
    before = scrape(admin)  # the metrics listener is not rate-limited
    statuses = []
    started = time.monotonic()
    for _ in range(100):
        answer = exchange(d.port)
        statuses.append(status_of(answer))
        if statuses[-1] == 503:
            assert b"Retry-After: 1" in answer and b"too many connections from your address" in answer
    elapsed = time.monotonic() - started
    served, refused_seen = statuses.count(200), statuses.count(503)
    assert served + refused_seen == 100, statuses
    # the burst of 5 (less the daemon helper's port probe), plus 2 a second while the loop ran
    assert 1 <= served <= 5 + 2 * elapsed + 1, (served, elapsed)
    assert refused_seen >= 50

    # another address has a bucket of its own: a WebSocket handshake from 127.0.0.2 is served
    with socket.socket() as s:
        s.bind(("127.0.0.2", 0))
        s.settimeout(10)
        s.connect(("127.0.0.1", d.port))
        s.sendall(handshake_request("/"))
        head, _ = read_head(s)
        assert head.startswith(b"HTTP/1.1 101 "), head
    assert status_of(exchange(d.port, source="127.0.0.3")) == 200

    after = scrape(admin)
    assert refused(after, "rate") - refused(before, "rate") == refused_seen
    assert refused(after, "limit") - refused(before, "limit") == 0
    # logged as a summary a second, never a line per refusal
    log = d.wait_for_log("connection rate limit: refused", timeout=5)
    lines = [line for line in log.splitlines() if "connection rate limit" in line]
    assert 1 <= len(lines) <= 2 + elapsed, lines
    assert "127.0.0.1: " in lines[0]


def test_trusted_proxies_are_exempt_from_the_connection_rate(daemon_factory):
    d = daemon_factory(
        "--max-connects-per-second", "1", "--max-connects-burst", "3", "--trusted-proxies", "127.0.0.1"
    )
    assert [status_of(exchange(d.port)) for _ in range(30)] == [200] * 30
    from_others = [status_of(exchange(d.port, source="127.0.0.2")) for _ in range(30)]
    assert from_others.count(503) >= 20, from_others


def test_the_connection_rate_can_be_turned_off(daemon_factory):
    d = daemon_factory("--max-connects-per-second", "0", "--max-connects-burst", "1")
    assert [status_of(exchange(d.port)) for _ in range(60)] == [200] * 60


def test_the_default_connection_rate_is_on(daemon_factory):
    """At the defaults (20 a second, a burst of 40) a quick run of 80 connections from one address
    gets the burst and then 503s."""
    d = daemon_factory(connect_rate=True)
    started = time.monotonic()
    statuses = [status_of(exchange(d.port)) for _ in range(80)]
    elapsed = time.monotonic() - started
    served = statuses.count(200)
    assert statuses.count(503) == 80 - served
    assert 39 <= served <= 40 + 20 * elapsed + 1, (served, elapsed)
