"""on_connect and Reject on every transport, against the real daemon with real clients.

A bad token gets HTTP 403 with the reason (status line and text body) on RFC 6455
(websockets: InvalidStatus), hixie-76 and hixie-75 (our hixie client: a plain
HTTP answer, nothing upgraded) and the long-polling open; on_open never runs and
the daemon logs and counts each refusal. A handler that raises gives 500 and a
traceback. A good token opens with ``conn.user`` set (echoed by ``whoami``).
"""

from __future__ import annotations

import asyncio
import http.client
import json
import urllib.request

import pytest
import websocket
import websockets
from websockets.exceptions import InvalidStatus

from tests.support.hixie_client import HandshakeFailed, HixieClient
from tests.support.lp_helpers import Session, read_response

APP = "tests.support.rooms_app:app"


@pytest.fixture(scope="module")
def daemon():
    from tests.support.daemon_process import Daemon

    d = Daemon(app=APP)
    yield d
    d.stop()


def state(d) -> dict:
    with urllib.request.urlopen(d.http_url + "/state", timeout=10) as resp:
        return json.loads(resp.read())


def opened_users(d) -> list:
    return [user for _, user in state(d)["opens"]]


def test_rfc6455_bad_token_is_403_with_the_reason(daemon):
    async def attempt():
        with pytest.raises(InvalidStatus) as caught:
            await websockets.connect(daemon.url + "?token=bad-ws&name=mallory-ws", open_timeout=10)
        return caught.value.response

    response = asyncio.run(attempt())
    assert response.status_code == 403
    assert response.reason_phrase == "bad token"
    assert bytes(response.body).decode().strip() == "bad token"
    assert response.headers["Content-Type"].startswith("text/plain")
    assert "mallory-ws" not in opened_users(daemon)


def test_websocket_client_bad_token_is_refused(daemon):
    with pytest.raises(websocket.WebSocketBadStatusException) as caught:
        websocket.create_connection(daemon.url + "?token=bad-wsc&name=mallory-wsc", timeout=10)
    assert caught.value.status_code == 403
    assert "mallory-wsc" not in opened_users(daemon)


@pytest.mark.parametrize("draft", [76, 75])
def test_hixie_bad_token_gets_a_plain_http_403(daemon, draft):
    client = HixieClient(daemon.host, daemon.port, draft=draft, path=f"/?token=bad&name=mallory-{draft}")
    try:
        with pytest.raises(HandshakeFailed) as caught:
            client.handshake()
    finally:
        client.close()
    failed = caught.value
    assert failed.status == 403
    assert failed.head.startswith("HTTP/1.1 403 bad token\r\n"), failed.head
    assert "upgrade" not in failed.head.lower()
    assert failed.body.decode().strip() == "bad token"
    assert f"mallory-{draft}" not in opened_users(daemon)


def test_long_polling_open_with_a_bad_token_is_403(daemon):
    conn = http.client.HTTPConnection(daemon.host, daemon.port, timeout=10)
    try:
        conn.request("POST", "/lp/open/?token=bad&name=mallory-lp", body=b"")
        resp = conn.getresponse()
        body = resp.read()
    finally:
        conn.close()
    assert resp.status == 403
    assert resp.reason == "bad token"
    assert json.loads(body) == {"error": "bad token", "status": 403}
    assert "mallory-lp" not in opened_users(daemon)


def test_refusals_are_logged_once_and_counted(daemon_factory):
    d = daemon_factory(app=APP)
    with pytest.raises(websocket.WebSocketBadStatusException):
        websocket.create_connection(d.url + "?token=bad-once", timeout=10)
    log = d.wait_for_log("403 bad token")
    assert log.count("403 bad token") == 1
    assert state(d)["status"]["rejected"] == 1
    assert state(d)["opens"] == []


def test_an_exception_in_on_connect_is_500_with_a_traceback(daemon_factory):
    d = daemon_factory(app=APP)
    with pytest.raises(websocket.WebSocketBadStatusException) as caught:
        websocket.create_connection(d.url + "?token=boom", timeout=10)
    assert caught.value.status_code == 500
    conn = http.client.HTTPConnection(d.host, d.port, timeout=10)
    conn.request("POST", "/lp/open/?token=boom", body=b"")
    status, _, doc = read_response(conn)
    conn.close()
    assert status == 500
    log = d.wait_for_log("RuntimeError: on_connect exploded")
    assert "Traceback" in log and "error in on_connect" in log
    assert state(d)["status"]["on_connect_errors"] == 2
    assert state(d)["opens"] == []


def test_good_tokens_open_with_the_user_on_every_transport(daemon):
    async def rfc6455():
        async with websockets.connect(daemon.url + "?token=t1&name=alice") as ws:
            await ws.send("whoami")
            return await ws.recv()

    assert asyncio.run(rfc6455()) == "user alice"

    ws = websocket.create_connection(daemon.url + "?token=t2&name=bob", timeout=10)
    ws.send("whoami")
    assert ws.recv() == "user bob"
    ws.close()

    for draft in (76, 75):
        with HixieClient(daemon.host, daemon.port, draft=draft, path=f"/?name=carol{draft}") as client:
            client.handshake()
            client.send_text("whoami")
            assert client.recv() == f"user carol{draft}"

    session = Session(daemon, path="/?token=t3&name=dave")
    session.send("whoami")
    session.poll_until(lambda s: "user dave" in s.texts())
    session.close_sockets()

    opened = state(daemon)["opens"]
    for protocol, user in [
        ("rfc6455", "alice"),
        ("rfc6455", "bob"),
        ("hixie-76", "carol76"),
        ("hixie-75", "carol75"),
        ("long-polling", "dave"),
    ]:
        assert [protocol, user] in opened
