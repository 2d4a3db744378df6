"""Logs at INFO under a reconnect storm: one summary line per interval, not two lines per connection (issue 12.12)."""

import re
import time
import urllib.error
import urllib.request

import websocket

from tests.support.daemon_process import Daemon


def test_info_log_summarises_connections_and_keeps_404s_out(tmp_path):
    daemon = Daemon("--log-level", "info", "--log-summary-interval", "1s")
    try:
        for _ in range(40):
            ws = websocket.create_connection(daemon.url, timeout=5)
            ws.close()
        try:
            urllib.request.urlopen(daemon.http_url + "/favicon.ico", timeout=5)
        except urllib.error.HTTPError as exc:
            assert exc.code == 404
        deadline = time.monotonic() + 5
        while "connections:" not in daemon.log() and time.monotonic() < deadline:
            time.sleep(0.1)
        log = daemon.log()
    finally:
        daemon.stop()
    assert "open rfc6455" not in log and "close rfc6455" not in log  # per-connection lines are DEBUG
    assert "handshake refused" not in log and "favicon" not in log  # a missing file is not a handshake
    summaries = re.findall(
        r"connections: (\d+) opened, (\d+) closed in the last 1 s; (\d+) connections? open", log
    )
    assert summaries, log[-2000:]
    assert sum(int(o) for o, _, _ in summaries) == 40
    assert len(log.splitlines()) < 20, log  # 40 connections did not write 80 lines


def test_a_debug_log_still_has_every_connection(tmp_path):
    daemon = Daemon("--log-level", "debug")
    try:
        ws = websocket.create_connection(daemon.url + "room", timeout=5)
        ws.close()
        deadline = time.monotonic() + 5
        while "close rfc6455" not in daemon.log() and time.monotonic() < deadline:
            time.sleep(0.1)
        log = daemon.log()
    finally:
        daemon.stop()
    assert re.search(r"DEBUG wsdaemon.app: open rfc6455 127.0.0.1:\d+ /room", log)
    assert "close rfc6455" in log
