"""--log-format json and --log-connections against the real daemon, including a reconnect storm.

Every line the daemon writes parses with ``json.loads``; connection lines carry
their fields; 5,000 connections opened and dropped within 10 s leave at most
``--log-connections-rate`` lines a second plus one WARNING per second that counts
the rest, so the log stays small, and nothing is lost from the count.
"""

from __future__ import annotations

import json
import socket
import time

from websockets.sync.client import connect

from tests.support.lp_helpers import wait_for
from tests.support.rawclient import handshake_request, read_head

STORM = 5000
RATE = 50
#: What the storm may write: RATE lines a second for about 10 s, the WARNING lines, the start and stop.
MAX_LOG_BYTES = 400 * 1024


def json_lines(d) -> list[dict]:
    lines = [line for line in d.log().splitlines() if line.strip()]
    return [json.loads(line) for line in lines]  # fails on any line that is not one JSON object


def test_json_lines_with_connection_fields(daemon_factory):
    d = daemon_factory("--log-format", "json", "--log-connections")
    with connect(f"{d.url}?x=1", open_timeout=10) as ws:
        ws.send("hi")
        assert ws.recv(timeout=10) == "hi"
    wait_for(lambda: any(r["event"] == "close" for r in json_lines(d)))
    records = json_lines(d)
    assert all({"time", "level", "pid", "event", "message"} <= r.keys() for r in records)
    assert all(r["pid"] == d.proc.pid for r in records)
    (opened,) = [r for r in records if r["event"] == "open"]
    (closed,) = [r for r in records if r["event"] == "close"]
    assert (
        opened["transport"] == "rfc6455"
        and opened["remote"].startswith("127.0.0.1:")
        and opened["level"] == "info"
    )
    assert closed["code"] == 1000 and closed["reason"] == "" and 0 <= closed["duration"] < 10
    assert closed["remote"] == opened["remote"]


def test_without_log_connections_the_lines_stay_at_debug(daemon_factory):
    d = daemon_factory("--log-format", "json", "--log-level", "info")
    with connect(d.url, open_timeout=10) as ws:
        ws.send("hi")
        ws.recv(timeout=10)
    time.sleep(0.3)
    assert not [r for r in json_lines(d) if r["event"] in ("open", "close")]


def test_a_reconnect_storm_keeps_the_log_small(daemon_factory):
    d = daemon_factory(
        "--log-format",
        "json",
        "--log-connections",
        "--log-connections-rate",
        str(RATE),
        "--log-level",
        "info",
    )
    started = time.monotonic()
    for i in range(STORM):
        sock = socket.create_connection((d.host, d.port), timeout=10)
        sock.sendall(handshake_request("/"))
        head, _ = read_head(sock)
        assert head.startswith(b"HTTP/1.1 101"), head
        sock.close()  # dropped without a close frame: a reconnect storm
        assert time.monotonic() - started < 10 or i > STORM * 0.9, f"only {i} connections in 10 s"
    elapsed = time.monotonic() - started

    def counted() -> int:
        records = json_lines(d)
        lines = sum(1 for r in records if r["event"] in ("open", "close"))
        return lines + sum(r["count"] for r in records if r["event"] == "suppressed")

    wait_for(lambda: counted() == 2 * STORM, timeout=15)  # every open and close, logged or counted
    records = json_lines(d)
    per_connection = sum(1 for r in records if r["event"] in ("open", "close"))
    assert per_connection <= RATE * (elapsed + 3), (per_connection, elapsed)
    assert any(r["event"] == "suppressed" and r["level"] == "warning" for r in records)
    size = len(d.log().encode())
    print(f"storm: {STORM} connections in {elapsed:.1f} s, {per_connection} lines, log {size} bytes")
    assert size < MAX_LOG_BYTES, size
