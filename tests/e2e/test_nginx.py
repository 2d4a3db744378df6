"""The daemon behind a real nginx with the shipped etc/nginx/wsdaemon.conf (TLS at nginx, plain to us).

nginx is Debian's package, run privately on a free port by tests/support/nginx_server.py;
the daemon trusts it (``--trusted-proxies 127.0.0.1``). Through it:

- a ``websockets`` client over ``wss://`` echoes, connecting from 127.0.0.2, and the
  application sees 127.0.0.2 (not nginx's address) and a secure scheme;
- ``wsdaemon.js`` in Chromium falls back to long-polling when the upgrade fails behind
  nginx (an upgrade-breaking proxy between nginx and the daemon), and echoes over it;
- a daemon stop reaches the client through nginx as close code 1001, and a daemon
  started again on the same port is reached through the same nginx.
"""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.support.daemon_process import Daemon
from tests.support.nginx_server import Nginx
from tests.support.upgrade_blocker import UpgradeBlockingProxy

WHOAMI = "tests.support.whoami_app:app"
SESSIONS = "tests.support.session_app:app"
TIMEOUT_MS = 20_000


@pytest.fixture
def nginx_factory(tmp_path):
    started: list[Nginx] = []

    def start(upstream_port: int) -> Nginx:
        prefix = tmp_path / f"nginx{len(started)}"
        prefix.mkdir()
        n = Nginx(prefix, upstream_port)
        started.append(n)
        return n

    yield start
    for n in started:
        n.stop()


def wss_from(nginx: Nginx, source: str, path: str = "/"):
    """A websockets client over TLS to nginx, its socket bound to ``source`` first."""
    sock = socket.socket()
    sock.bind((source, 0))
    sock.settimeout(10)
    sock.connect(("127.0.0.1", nginx.port))
    return connect(nginx.wss_url + path, sock=sock, ssl=nginx.client_context(), open_timeout=10)


def test_wss_echo_and_the_real_client_address(daemon_factory, nginx_factory):
    d = daemon_factory("--trusted-proxies", "127.0.0.1", app=WHOAMI)
    nginx = nginx_factory(d.port)
    with wss_from(nginx, "127.0.0.2") as ws:
        who = json.loads(ws.recv(timeout=10))
        assert who["remote_address"][0] == "127.0.0.2", who  # the browser's address, not nginx's
        assert who["peer_address"][0] == "127.0.0.1" and who["secure"] is True, who
        for message in ("hello", "x" * 70_000, "état"):
            ws.send(message)
            assert ws.recv(timeout=10) == message
        ws.send(b"\x00\x01\xff")
        assert ws.recv(timeout=10) == b"\x00\x01\xff"
    for path in ("/metrics", "/status"):  # the operator's, not the Internet's
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(nginx.https_url + path, context=nginx.client_context(), timeout=10)
        assert refused.value.code == 404


def test_without_trust_the_daemon_sees_nginx(daemon_factory, nginx_factory):
    d = daemon_factory(app=WHOAMI)
    nginx = nginx_factory(d.port)
    with wss_from(nginx, "127.0.0.2") as ws:
        who = json.loads(ws.recv(timeout=10))
        assert who["remote_address"][0] == "127.0.0.1" and who["peer_address"] is None, who
        assert who["secure"] is False  # the daemon's own socket is plain


def test_a_daemon_stop_reaches_the_client_as_1001(daemon_factory, nginx_factory):
    d = daemon_factory("--trusted-proxies", "127.0.0.1", app=WHOAMI)
    nginx = nginx_factory(d.port)
    with wss_from(nginx, "127.0.0.1") as ws:
        ws.recv(timeout=10)
        d.stop()
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=10)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001, closed.value
    again = Daemon("--trusted-proxies", "127.0.0.1", app=WHOAMI, port=d.port)
    try:
        with wss_from(nginx, "127.0.0.1") as ws:
            assert json.loads(ws.recv(timeout=10))["secure"] is True
            ws.send("back")
            assert ws.recv(timeout=10) == "back"
    finally:
        again.stop()


def test_the_js_client_falls_back_to_long_polling_through_nginx(daemon_factory, nginx_factory, browser):
    d = daemon_factory("--trusted-proxies", "127.0.0.1", app=SESSIONS)
    breaker = UpgradeBlockingProxy(d.port)  # nginx -> (upgrades reset here) -> daemon
    try:
        nginx = nginx_factory(breaker.port)
        context = browser.new_context(ignore_https_errors=True)
        page = context.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        page.goto(f"{nginx.https_url}/session-page?timeout=3000")
        page.wait_for_function("window.events.length > 0 && window.got.length > 0")
        assert page.evaluate("window.events") == ["open long-polling"]
        assert page.evaluate("window.got") == ["welcome"]
        page.evaluate("window.ws.send('through nginx')")
        page.wait_for_function("window.got.length >= 2")
        assert page.evaluate("window.got") == ["welcome", "through nginx"]
        assert breaker.blocked >= 1  # the WebSocket was tried first and broken behind nginx
        context.close()
    finally:
        breaker.close()
