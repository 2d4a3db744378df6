"""Admission against the real daemon: the metrics listener answers at --max-connections (and has a cap
of its own); the refusals are counted in /metrics."""

from __future__ import annotations

import json
import socket
import urllib.request

import websocket

from tests.support.daemon_process import free_port
from tests.support.lp_helpers import wait_for
from tests.support.metrics_scrape import scrape
from tests.support.rawclient import read_until_closed, status_of
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
