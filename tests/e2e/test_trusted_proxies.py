"""--trusted-proxies against the real daemon: forwarding headers believed only from trusted peers.

The test client connects from 127.0.0.1 and writes the headers a proxy would. With
127.0.0.1 trusted the application sees the forwarded client (WebSocket and
long-polling); with only another address trusted, or none, the same headers are
ignored and the application sees the socket's peer.
"""

import json

import pytest
from websockets.sync.client import connect

from tests.support.lp_helpers import Session

APP = "tests.support.whoami_app:app"
FORWARDED = {"X-Forwarded-For": "203.0.113.7, 127.0.0.1", "X-Forwarded-Proto": "https"}


def ws_who(d, headers) -> dict:
    with connect(f"ws://{d.host}:{d.port}/", additional_headers=headers, open_timeout=10) as ws:
        return json.loads(ws.recv(timeout=10))


def test_a_trusted_proxy_names_the_client(daemon_factory):
    d = daemon_factory("--trusted-proxies", "127.0.0.1", app=APP)
    who = ws_who(d, FORWARDED)
    assert who["remote_address"] == ["203.0.113.7", 0]
    assert who["peer_address"][0] == "127.0.0.1"
    assert who["secure"] is True  # the scheme the client used at the proxy


def test_rfc7239_forwarded_with_a_port(daemon_factory):
    d = daemon_factory("--trusted-proxies", "127.0.0.0/8", app=APP)
    who = ws_who(d, {"Forwarded": 'for="[2001:db8::1]:4711";proto=http'})
    assert who["remote_address"] == ["2001:db8::1", 4711] and who["secure"] is False


def test_long_polling_sees_the_forwarded_client(daemon_factory):
    d = daemon_factory("--trusted-proxies", "127.0.0.1", app=APP)
    s = Session(d, "/", headers=FORWARDED)
    s.poll_until(lambda s: s.texts())
    assert json.loads(s.texts()[0])["remote_address"] == ["203.0.113.7", 0]
    s.close_sockets()


@pytest.mark.parametrize("trusted", [None, "10.0.0.1"])
def test_forwarding_headers_from_an_untrusted_peer_are_ignored(daemon_factory, trusted):
    args = ("--trusted-proxies", trusted) if trusted else ()
    d = daemon_factory(*args, app=APP)
    who = ws_who(d, {**FORWARDED, "Forwarded": "for=198.51.100.9"})
    assert who["remote_address"][0] == "127.0.0.1" and who["remote_address"][1] > 0
    assert who["peer_address"] is None and who["secure"] is False


def test_a_bad_value_stops_the_start_with_a_message(tmp_path):
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "wsdaemon", "run", "--port", "0", "--trusted-proxies", "proxy.example"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode != 0
    assert "trusted_proxies: not an address or network: 'proxy.example'" in out.stderr
