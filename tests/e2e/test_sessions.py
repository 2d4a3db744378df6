"""Resumable sessions with Python clients: the envelope on the wire, resume, limits, expiry.

The daemon runs ``tests.support.session_app``; :class:`SessionClient` speaks the
envelope as ``wsdaemon.js`` does; ``websockets`` without the parameter is a raw
client that must see nothing of it. Long-polling is driven with plain HTTP.
"""

from __future__ import annotations

import functools
import http.client
import json
import time
import urllib.request

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.support.lp_helpers import request, wait_for
from tests.support.session_client import SessionClient

APP = "tests.support.session_app:app"


@pytest.fixture(scope="module")
def daemon():
    from tests.support.daemon_process import Daemon

    d = Daemon(app=APP)
    yield d
    d.stop()


@pytest.fixture
def daemon_factory(daemon_factory):
    """tests/conftest.py's factory, with this module's application."""
    return functools.partial(daemon_factory, app=APP)


def callbacks(daemon, session_id=None) -> list[dict]:
    with urllib.request.urlopen(daemon.http_url + "/callbacks", timeout=10) as resp:
        seen = json.loads(resp.read())
    return [c for c in seen if session_id is None or c["session"] == session_id]


def events(daemon, session_id) -> list[str]:
    return [c["event"] for c in callbacks(daemon, session_id)]


def url(daemon, path="/chat"):
    return f"ws://{daemon.host}:{daemon.port}{path}"


def test_a_raw_client_sees_no_envelope(daemon):
    with connect(url(daemon, "/chat?x=1")) as ws:
        assert ws.recv(timeout=5) == "welcome"
        ws.send("hello")
        assert ws.recv(timeout=5) == "hello"
        ws.send(b"\x00\x01")
        assert ws.recv(timeout=5) == b"\x00\x01"
    opened = [c for c in callbacks(daemon) if c["event"] == "open" and c["query"] == {"x": "1"}]
    assert opened and opened[-1]["session"] is None and opened[-1]["protocol"] == "rfc6455"


def test_the_envelope_on_the_wire(daemon):
    c = SessionClient(url(daemon, "/chat?room=7"))
    assert c.hello["resumed"] is False and c.hello["ack"] == 0 and c.hello["next"] == 1
    assert len(c.session_id) >= 24 and len(c.token) >= 24 and c.session_id != c.token
    assert c.recv() == (1, "welcome")
    c.send("hello")
    assert c.recv() == (2, "hello")
    c.send(b"\x00\xff")
    assert c.recv() == (3, b"\x00\xff")  # binary stays binary
    # The numbers are implicit: the frames are the application's bytes, a leading "!" escaped.
    c.ws.send("!!bang")  # the application's "!bang"
    assert c.ws.recv(timeout=5) == "!!bang"
    c.ws.send("plain")
    assert c.ws.recv(timeout=5) == "plain"
    c.ws.send(b"\x00\xff")
    assert c.ws.recv(timeout=5) == b"\x00\xff"
    # The application never sees our parameter.
    (opened,) = [x for x in callbacks(daemon, c.session_id) if x["event"] == "open"]
    assert opened["query"] == {"room": "7"}
    c.close()


def test_a_session_over_a_compressed_websocket(daemon):
    """The websockets client offers permessage-deflate, as every browser does: the session's
    carrier agrees it, numbered messages of any size (compressed from 64 bytes on) round-trip,
    binary stays binary, and the same session resumes on a connection that did not offer it."""
    c = SessionClient(url(daemon))
    assert c.ws.response.headers["Sec-WebSocket-Extensions"].startswith("permessage-deflate")
    assert c.recv() == (1, "welcome")
    long_text = "état " + "x" * 500
    c.send(long_text)
    assert c.recv() == (2, long_text)
    blob = bytes(range(256)) * 8
    c.send(blob)
    assert c.recv() == (3, blob)
    c.send("later 200 3 300")
    c.drop()
    time.sleep(0.5)
    r = SessionClient(url(daemon), resume_from=c, compression=None)
    assert "Sec-WebSocket-Extensions" not in r.ws.response.headers
    assert [r.recv()[1] for _ in range(3)] == [f"later {i} " + "x" * 300 for i in range(1, 4)]
    r.close()


def test_acks_are_batched(daemon):
    c = SessionClient(url(daemon))
    c.recv()
    for i in range(200):
        c.send(f"m{i}")
    for i in range(200):
        assert c.recv()[1] == f"m{i}"
    deadline = time.monotonic() + 5
    while (not c.acks_received or c.acks_received[-1] < 200) and time.monotonic() < deadline:
        try:
            c.recv(timeout=0.5)
        except TimeoutError:
            pass
    assert c.acks_received and c.acks_received[-1] == 200
    assert len(c.acks_received) <= 200 // 64 + 4, c.acks_received  # not one per message
    assert c.outbox == []
    c.close()


def test_every_session_gets_its_ack_after_the_delay(daemon):
    """The acks due wait in one queue by due time: each session's comes about a second after its
    first unacknowledged message, a dropped session's is dropped, the others still come."""
    clients = [SessionClient(url(daemon)) for _ in range(4)]
    started = []
    for i, c in enumerate(clients):
        c.recv()
        started.append(time.monotonic())
        for j in range(i + 1):
            c.send(f"m{j}")
        time.sleep(0.1)
    clients[1].drop()  # suspended: its pending ack goes nowhere
    for i, c in enumerate(clients):
        if i == 1:
            continue
        for j in range(i + 1):
            assert c.recv()[1] == f"m{j}"
        with pytest.raises(TimeoutError):
            c.recv(timeout=1.5)  # nothing numbered follows; the ack is recorded on the way
        assert c.acks_received == [i + 1]
        assert time.monotonic() - started[i] >= 0.9  # ACK_DELAY after the first, not at once
    for i, c in enumerate(clients):
        if i != 1:
            c.close()


def test_resume_replays_exactly_once_both_ways(daemon):
    c = SessionClient(url(daemon))
    c.recv()
    c.send("later 300 5 10")  # five messages while the client is away
    c.send("first")
    assert c.recv()[1] == "first"
    c.drop()
    time.sleep(0.6)
    wait_for(lambda: events(daemon, c.session_id) == ["open"])

    r = SessionClient(url(daemon), resume_from=c)
    assert r.hello["resumed"] is True and r.session_id == c.session_id
    # The server had both client messages: nothing left to resend. Its next message is the
    # first one the client did not have.
    assert r.hello["ack"] == 2 and r.outbox == [] and r.hello["next"] == 3
    got = [r.recv() for _ in range(5)]
    assert got == [(2 + i, f"later {i} " + "x" * 10) for i in range(1, 6)]
    r.send("after")
    assert r.recv() == (8, "after")  # "first" was delivered once
    assert events(daemon, c.session_id) == ["open", "resume"]
    r.close()
    wait_for(lambda: events(daemon, c.session_id) == ["open", "resume", "close"])
    (closed,) = [x for x in callbacks(daemon, c.session_id) if x["event"] == "close"]
    assert closed["code"] == 1000


def test_unacknowledged_client_messages_are_resent_once(daemon):
    c = SessionClient(url(daemon))
    c.recv()
    c.drop()  # before anything could be acknowledged
    time.sleep(0.3)
    c.sent_seq += 1
    c.outbox.append((c.sent_seq, "sent while away"))  # queued by the client during the drop
    r = SessionClient(url(daemon), resume_from=c)
    assert r.hello["ack"] == 0
    r.resend_unacknowledged()
    assert r.recv() == (2, "sent while away")
    r.send("next")
    assert r.recv() == (3, "next")
    r.close()


def test_rooms_and_user_data_survive_a_resume(daemon):
    c = SessionClient(url(daemon))
    c.recv()
    c.send("join lobby")
    assert c.recv()[1] == "joined lobby"
    c.drop()
    time.sleep(0.3)
    # Published while away: kept for the resume.
    with connect(url(daemon)) as raw:
        raw.recv(timeout=5)
        raw.send("room lobby hello room")
        time.sleep(0.3)
    r = SessionClient(url(daemon), resume_from=c)
    assert r.recv()[1] == "hello room"
    r.send("rooms")
    assert json.loads(r.recv()[1]) == ["lobby"]
    r.close()


def test_keyed_sends_conflate_while_suspended(daemon):
    c = SessionClient(url(daemon))
    c.recv()
    c.send("keyed 300 50")
    c.drop()
    time.sleep(0.8)
    r = SessionClient(url(daemon), resume_from=c)
    assert r.recv()[1] == "state 50"  # one message, the newest
    r.send("done")
    assert r.recv()[1] == "done"
    r.close()


def test_a_bad_token_is_not_recovered(daemon):
    c = SessionClient(url(daemon))
    c.recv()
    c.drop()
    param = f"{c.session_id}.{'x' * len(c.token)}.1"
    with connect(url(daemon) + f"?wsdaemon_session={param}") as ws:
        with pytest.raises(ConnectionClosed) as info:
            ws.recv(timeout=5)
    assert info.value.rcvd.code == 4000 and info.value.rcvd.reason == "session not recovered"
    # The real owner still can.
    r = SessionClient(url(daemon), resume_from=c)
    assert r.hello["resumed"] is True
    r.close()


def test_a_malformed_session_parameter_is_a_400(daemon):
    conn = http.client.HTTPConnection(daemon.host, daemon.port, timeout=5)
    headers = {
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version": "13",
    }
    conn.request("GET", "/chat?wsdaemon_session=garbage", headers=headers)
    assert conn.getresponse().status == 400


def test_past_the_window_the_session_closes_1006(daemon_factory):
    d = daemon_factory("--resume-window", "0.5")
    c = SessionClient(url(d))
    c.recv()
    c.drop()
    wait_for(lambda: events(d, c.session_id) == ["open", "close"], timeout=10)
    (closed,) = [x for x in callbacks(d, c.session_id) if x["event"] == "close"]
    assert (closed["code"], closed["reason"]) == (1006, "session not resumed")
    with pytest.raises(ConnectionClosed) as info:
        SessionClient(url(d), resume_from=c).recv()
    assert info.value.rcvd.code == 4000


def test_past_the_resume_buffer_the_session_closes_1008(daemon_factory):
    d = daemon_factory("--resume-buffer", "10000")
    c = SessionClient(url(d))
    c.recv()
    c.send("later 300 40 500")  # 20 kB while away
    c.drop()
    wait_for(lambda: events(d, c.session_id) == ["open", "close"], timeout=10)
    (closed,) = [x for x in callbacks(d, c.session_id) if x["event"] == "close"]
    assert (closed["code"], closed["reason"]) == (1008, "resume buffer full")


def test_a_session_moves_from_long_polling_to_websocket(daemon):
    conn = http.client.HTTPConnection(daemon.host, daemon.port, timeout=10)
    status, _, doc = request(conn, "POST", "/lp/open/chat?wsdaemon_session=new", b"")
    assert status == 200 and doc["token"] and doc["window"] == 30.0
    assert doc["messages"] == [{"seq": 1, "text": "welcome"}]
    sid = doc["session"]
    status, _, answer = request(
        conn, "POST", f"/lp/{sid}/send", json.dumps({"messages": [{"seq": 1, "text": "over lp"}]})
    )
    assert status == 200 and answer["ack"] == 1
    # The client got "welcome" (1) but not the echo (2): it comes back over WebSocket.
    lp_client = SessionClient.__new__(SessionClient)
    lp_client.session_id, lp_client.token, lp_client.received_seq, lp_client.sent_seq = (
        sid,
        doc["token"],
        1,
        1,
    )
    lp_client.outbox = []
    r = SessionClient(url(daemon), resume_from=lp_client)
    assert r.hello["resumed"] is True and r.hello["ack"] == 1
    assert r.recv() == (2, "over lp")  # numbering shared by both transports
    r.send("over ws")
    assert r.recv() == (3, "over ws")
    assert [c["protocol"] for c in callbacks(daemon, sid)] == ["long-polling", "rfc6455"]
    # The long-polling carrier is gone.
    status, _, _ = request(conn, "GET", f"/lp/{sid}/poll?ack=2")
    assert status == 404
    r.close()


def test_a_long_polling_resume_of_an_unknown_session_is_410(daemon):
    conn = http.client.HTTPConnection(daemon.host, daemon.port, timeout=10)
    status, _, doc = request(conn, "POST", "/lp/open/chat?wsdaemon_session=nope.nope.0", b"")
    assert status == 410 and doc["error"] == "session not recovered"


def test_a_raw_long_polling_client_gets_no_token(daemon):
    conn = http.client.HTTPConnection(daemon.host, daemon.port, timeout=10)
    status, _, doc = request(conn, "POST", "/lp/open/chat", b"")
    assert status == 200 and "token" not in doc and "window" not in doc


def test_a_ping_timeout_suspends_the_session(daemon_factory):
    from tests.support.rawclient import RawWebSocket

    d = daemon_factory("--ping-interval", "0.3", "--ping-timeout", "0.5")
    raw = RawWebSocket(d.host, d.port, "/chat?wsdaemon_session=new")
    assert raw.status == 101
    opcode, payload = raw.recv_frame()
    hello = json.loads(payload[2:])
    assert raw.recv_frame() == (0x1, b"welcome")  # message 1: its place after the hello
    # The client answers no ping (a dead network that keeps the TCP connection).
    wait_for(
        lambda: (
            json.loads(urllib.request.urlopen(d.http_url + "/status").read())["resumable_sessions"][
                "suspended"
            ]
            == 1
        )
    )
    assert events(d, hello["session"]) == ["open"]  # suspended, not closed
    stale = SessionClient.__new__(SessionClient)
    stale.session_id, stale.token, stale.received_seq, stale.sent_seq, stale.outbox = (
        hello["session"],
        hello["token"],
        1,
        0,
        [],
    )
    r = SessionClient(url(d), resume_from=stale)
    assert r.hello["resumed"] is True
    assert events(d, hello["session"]) == ["open", "resume"]
    r.close()
    raw.close()


def test_a_shutdown_closes_suspended_sessions_with_1001(daemon_factory):
    d = daemon_factory()
    c = SessionClient(url(d))
    c.recv()
    c.drop()
    wait_for(
        lambda: (
            json.loads(urllib.request.urlopen(d.http_url + "/status").read())["resumable_sessions"][
                "suspended"
            ]
            == 1
        )
    )
    d.stop()
    with open(d.log_file.name) as f:
        log = f.read()
    assert "close rfc6455" in log and "code=1001 reason='server shutting down'" in log, log[-2000:]
