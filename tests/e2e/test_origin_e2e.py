"""The Origin policy against the real daemon, for every transport: RFC 6455 (13 and 8), hixie-76,
hixie-75 and long-polling (open, poll and send). Allowed, refused (403 and a log line) and missing.
"""

from __future__ import annotations

import json
import signal
import time

import pytest

from tests.support.hixie_client import HandshakeFailed, HixieClient
from tests.support.rawclient import handshake_request, http_exchange, status_of

ALLOWED = "https://game.example.com, https://*.example.org"
GOOD = "https://game.example.com"
GOOD_SUB = "https://eu.example.org"
EVIL = "https://evil.example"
ECHO = "wsdaemon.apps.echo:app"


def rfc6455_status(d, origin: str | None, header: str = "Origin", version: str = "13") -> int:
    headers = {} if origin is None else {header: origin}
    request = handshake_request(headers=headers).replace(
        b"Sec-WebSocket-Version: 13", f"Sec-WebSocket-Version: {version}".encode()
    )
    return status_of(http_exchange(d.host, d.port, request + b"\x88\x80\x00\x00\x00\x00"))


def hixie_status(d, draft: int, origin: str | None) -> int:
    client = HixieClient(d.host, d.port, draft, origin=origin)
    try:
        client.handshake()
        return 101
    except HandshakeFailed as exc:
        return exc.status
    finally:
        client.sock.close()


def lp_open(d, origin: str | None) -> tuple[int, dict]:
    head = f"POST /lp/open HTTP/1.1\r\nHost: {d.host}:{d.port}\r\nContent-Type: text/plain\r\nContent-Length: 0\r\n"
    if origin is not None:
        head += f"Origin: {origin}\r\n"
    answer = http_exchange(d.host, d.port, (head + "Connection: close\r\n\r\n").encode())
    return status_of(answer), json.loads(answer.partition(b"\r\n\r\n")[2] or b"{}")


def lp_request(d, method: str, path: str, origin: str | None, body: bytes = b"") -> int:
    head = f"{method} {path} HTTP/1.1\r\nHost: {d.host}:{d.port}\r\nConnection: close\r\n"
    if origin is not None:
        head += f"Origin: {origin}\r\n"
    if method == "POST":
        head += f"Content-Type: text/plain\r\nContent-Length: {len(body)}\r\n"
    return status_of(http_exchange(d.host, d.port, head.encode() + b"\r\n" + body))


TRANSPORTS = {
    "rfc6455": lambda d, o: rfc6455_status(d, o),
    "rfc6455-v8": lambda d, o: rfc6455_status(d, o, "Sec-WebSocket-Origin", "8"),
    "hixie-76": lambda d, o: hixie_status(d, 76, o),
    "hixie-75": lambda d, o: hixie_status(d, 75, o),
    "long-polling": lambda d, o: lp_open(d, o)[0],
}
OPENED = {"rfc6455": 101, "rfc6455-v8": 101, "hixie-76": 101, "hixie-75": 101, "long-polling": 200}


@pytest.fixture(scope="module")
def strict(tmp_path_factory):
    """Allow-list set, missing Origin refused."""
    from tests.support.daemon_process import Daemon

    d = Daemon("--allowed-origins", ALLOWED, "--no-allow-missing-origin", app=ECHO)
    yield d
    d.stop()


@pytest.fixture(scope="module")
def lenient():
    """Allow-list set, missing Origin accepted (the default)."""
    from tests.support.daemon_process import Daemon

    d = Daemon("--allowed-origins", ALLOWED, app=ECHO)
    yield d
    d.stop()


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_allowed_origins_connect(strict, transport):
    assert TRANSPORTS[transport](strict, GOOD) == OPENED[transport]
    assert TRANSPORTS[transport](strict, GOOD_SUB) == OPENED[transport]


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_other_origins_are_refused_with_403_and_logged(strict, transport):
    assert TRANSPORTS[transport](strict, EVIL) == 403
    assert TRANSPORTS[transport](strict, "https://example.org") == 403  # the wildcard wants a subdomain
    assert f"from '{EVIL}': origin not allowed" in strict.log()


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_missing_origin_follows_the_switch(strict, lenient, transport):
    assert TRANSPORTS[transport](strict, None) == 403
    assert TRANSPORTS[transport](lenient, None) == OPENED[transport]
    assert "missing Origin header" in strict.log()


def test_long_polling_poll_and_send_are_checked_too(strict):
    status, doc = lp_open(strict, GOOD)
    assert status == 200
    session = doc["session"]
    send = json.dumps({"messages": [{"seq": 1, "text": "hi"}]}).encode()
    assert lp_request(strict, "POST", f"/lp/{session}/send", EVIL, send) == 403
    assert lp_request(strict, "GET", f"/lp/{session}/poll?ack=0", EVIL) == 403
    assert lp_request(strict, "POST", f"/lp/{session}/send", GOOD, send) == 200


def test_allow_list_from_the_config_file_follows_sighup(daemon_factory, tmp_path):
    config = tmp_path / "wsdaemon.conf"
    config.write_text(f"[wsdaemon]\nallowed_origins = {GOOD}\n")
    d = daemon_factory("--config", str(config), app=ECHO)
    assert rfc6455_status(d, GOOD) == 101
    assert rfc6455_status(d, EVIL) == 403
    config.write_text(f"[wsdaemon]\nallowed_origins = {GOOD}, {EVIL}\n")
    d.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while "configuration reloaded" not in d.log():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert rfc6455_status(d, EVIL) == 101


def test_warning_at_start_when_every_origin_may_connect_on_a_public_address(daemon_factory):
    public = daemon_factory(app=ECHO, host="0.0.0.0")
    local = daemon_factory(app=ECHO)
    listed = daemon_factory("--allowed-origins", GOOD, app=ECHO, host="0.0.0.0")
    deadline = time.monotonic() + 10
    while not all("listening on" in d.log() for d in (public, local, listed)):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    warning = "no --allowed-origins: pages of any site may connect"
    assert warning in public.log()
    assert warning not in local.log() and warning not in listed.log()
