"""Long-polling against the real daemon with plain HTTP requests."""

import http.client
import json
import signal
import socket
import time

import pytest
import websocket

from tests.support.lp_helpers import Session, closes, raw_http, read_response, request, wait_for

APP = "tests.support.lp_app:app"


@pytest.fixture(scope="module")
def lp_daemon():
    from tests.support.daemon_process import Daemon

    d = Daemon("--longpoll-hold", "1", "--longpoll-max-body", "20000", app=APP)
    yield d
    d.stop()


@pytest.fixture(scope="module")
def cors_daemon():
    """An Origin allow-list, and requests without Origin refused (where the policy applies)."""
    from tests.support.daemon_process import Daemon

    d = Daemon(
        "--allowed-origins",
        "http://game.example, https://other.example:8443",
        "--no-allow-missing-origin",
        app=APP,
    )
    yield d
    d.stop()


def test_open_gives_the_application_the_opening_request(lp_daemon):
    s = Session(
        lp_daemon,
        "/game/room?level=3&name=%D1%8F",
        json.dumps({"protocols": ["x", "superchat"]}).encode(),
        {"Cookie": "player=42; theme=dark", "User-Agent": "lp-test"},
    )
    assert s.open_doc["protocol"] == "superchat"
    assert s.open_doc["hold"] == 1.0 and s.open_doc["expire"] == 30.0
    assert s.texts() == ["welcome long-polling"]  # sent by on_open, in the open response
    s.send("info")
    s.poll_until(lambda s: len(s.messages) == 2)
    info = json.loads(s.texts()[1])
    assert info["protocol"] == "long-polling"
    assert info["subprotocol"] == "superchat"
    assert info["path"] == "/game/room"
    assert info["query"] == {"level": ["3"], "name": ["я"]}
    assert info["cookies"] == {"player": "42", "theme": "dark"}
    assert info["remote"][0] == "127.0.0.1"
    assert info["user_agent"] == "lp-test"
    s.close_sockets()


def test_text_unicode_and_binary_in_order_on_keep_alive_connections(lp_daemon):
    s = Session(lp_daemon)
    texts = ["hello", "привет, мир ✓ 🎮", 'quote " and \\ and \n', ""]
    status, _, doc = s.post(
        *[{"seq": i + 1, "text": t} for i, t in enumerate(texts)], {"seq": 5, "binary": "AAEC/w=="}
    )
    assert (status, doc) == (200, {"ack": 5})
    s.poll_until(lambda s: len(s.messages) == 6)
    assert s.texts()[1:] == texts
    assert s.messages[-1] == {"seq": 6, "binary": "AAEC/w=="}
    # Every request used the same two connections (HTTP/1.1 keep-alive).
    post_sock, poll_sock = s.conn.sock, s.poll_conn.sock
    s.sent = 5
    s.send("again")
    s.poll_until(lambda s: s.texts()[-1] == "again")
    assert s.conn.sock is post_sock and s.poll_conn.sock is poll_sock
    s.close_sockets()


def test_poll_is_held_until_a_message_then_answered_at_once(lp_daemon):
    s = Session(lp_daemon)
    other = Session(lp_daemon)
    started = time.monotonic()
    s.start_held_poll()
    other.send(f"broadcast to all {s.id}")
    status, _, doc = read_response(s.poll_conn)
    elapsed = time.monotonic() - started
    assert status == 200 and doc["messages"][0]["text"] == f"to all {s.id}"
    assert elapsed < 0.9  # answered by the message, not by the 1 s hold
    s.close_sockets()
    other.close_sockets()


def test_empty_poll_after_the_hold_time(lp_daemon):
    s = Session(lp_daemon)
    started = time.monotonic()
    status, doc = s.poll()
    elapsed = time.monotonic() - started
    assert status == 200 and doc == {"ack": 0, "messages": []}
    assert 0.8 < elapsed < 3.0
    s.close_sockets()


def test_two_polls_racing(lp_daemon):
    s = Session(lp_daemon)
    first = s.start_held_poll()
    second = s.start_poll(conn=http.client.HTTPConnection(lp_daemon.host, lp_daemon.port, timeout=10))
    started = time.monotonic()
    status, _, doc = read_response(first)
    assert status == 200 and doc["messages"] == []
    assert time.monotonic() - started < 0.5  # the second poll answered the first at once
    # The second one is the held poll now: a message reaches it.
    s.send("to the second poll")
    status, _, doc = read_response(second)
    assert status == 200
    assert [m["text"] for m in doc["messages"]] == ["to the second poll"]
    second.close()
    s.close_sockets()


def test_lost_poll_response_is_sent_again(lp_daemon):
    s = Session(lp_daemon)
    s.send("one")
    s.poll_until(lambda s: len(s.messages) == 2)
    # Pretend the last response never arrived: poll with the old ack.
    status, doc = s.poll(ack=1)
    assert [m["seq"] for m in doc["messages"]] == [2]
    assert s.messages[-1]["text"] == "one"  # recorded once
    s.close_sockets()


def test_duplicate_post_is_not_delivered_twice(lp_daemon):
    s = Session(lp_daemon)
    item = {"seq": 1, "text": "only once"}
    for _ in range(3):  # a client retrying a post whose answer it lost
        status, _, doc = s.post(item)
        assert (status, doc) == (200, {"ack": 1})
    status, _, doc = s.post(item, {"seq": 2, "text": "then this"})
    assert (status, doc) == (200, {"ack": 2})
    s.poll_until(lambda s: s.texts()[-1] == "then this")
    s.start_poll()
    status, _, doc = read_response(s.poll_conn)  # held for the hold time: nothing else comes
    assert doc["messages"] == []
    assert s.texts() == ["welcome long-polling", "only once", "then this"]
    s.close_sockets()


def test_sequence_gap_is_409_with_the_ack(lp_daemon):
    s = Session(lp_daemon)
    s.send("first")
    status, _, doc = s.post({"seq": 3, "text": "skipped one"})
    assert status == 409 and doc["ack"] == 1 and "error" in doc


def test_bad_requests_get_json_errors_and_the_session_survives(lp_daemon):
    s = Session(lp_daemon)
    for body in (b"not json", b'{"messages": [{"seq": 1, "close": 1006}]}', b'{"messages": 1}'):
        status, _, doc = request(s.conn, "POST", f"/lp/{s.id}/send", body)
        assert status == 400 and doc["status"] == 400 and doc["error"]
    status, _, doc = request(s.conn, "GET", f"/lp/{s.id}/poll?ack=99")
    assert status == 400 and "ack" in doc["error"]
    status, _, doc = request(s.conn, "GET", f"/lp/{s.id}/send")
    assert status == 405
    status, _, doc = request(s.conn, "POST", f"/lp/{s.id}/nothing")
    assert status == 404
    s.send("still alive")
    s.poll_until(lambda s: s.texts()[-1] == "still alive")
    s.close_sockets()


def test_unknown_session_is_404_json(lp_daemon):
    conn = http.client.HTTPConnection(lp_daemon.host, lp_daemon.port, timeout=10)
    for method, path in (("GET", "/lp/nosuchsession/poll?ack=0"), ("POST", "/lp/nosuchsession/send")):
        status, headers, doc = request(conn, method, path, b'{"messages": []}' if method == "POST" else None)
        assert status == 404
        assert headers["content-type"] == "application/json"
        assert doc == {"error": "unknown session", "status": 404}
    conn.close()


def test_oversized_body_is_413_and_the_connection_closes(lp_daemon):
    s = Session(lp_daemon)
    big = json.dumps({"messages": [{"seq": 1, "text": "x" * 30000}]}).encode()
    status, headers, doc = request(s.conn, "POST", f"/lp/{s.id}/send", big)
    assert status == 413 and doc["status"] == 413
    assert headers["connection"] == "close"
    # The session is unharmed; a smaller message goes through.
    s.conn.close()
    s.send("small")
    s.poll_until(lambda s: s.texts()[-1] == "small")
    s.close_sockets()


def test_chunked_body_is_411(lp_daemon):
    s = Session(lp_daemon)
    payload = b'{"messages":[{"seq":1,"text":"x"}]}'
    data = (
        f"POST /lp/{s.id}/send HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
        + b"%x\r\n" % len(payload)
        + payload
        + b"\r\n0\r\n\r\n"
    )
    reply = raw_http(lp_daemon.host, lp_daemon.port, data)
    assert reply.startswith(b"HTTP/1.1 411 ")
    s.close_sockets()


def test_body_split_across_packets_then_pipelined_request(lp_daemon):
    s = Session(lp_daemon)
    payload = json.dumps({"messages": [{"seq": 1, "text": "split é"}]}).encode()
    head = f"POST /lp/{s.id}/send HTTP/1.1\r\nHost: x\r\nContent-Length: {len(payload)}\r\n\r\n".encode()
    second = f"GET /lp/{s.id}/poll?ack=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
    with socket.create_connection((lp_daemon.host, lp_daemon.port), timeout=10) as sock:
        sock.sendall(head + payload[:5])
        time.sleep(0.05)
        sock.sendall(payload[5:-3])
        time.sleep(0.05)
        sock.sendall(payload[-3:] + second)
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    first, _, rest = reply.partition(b"\r\n\r\n")
    assert first.startswith(b"HTTP/1.1 200 ")
    assert rest.startswith(b'{"ack":1}HTTP/1.1 200 ')
    assert json.loads(rest.split(b"\r\n\r\n", 1)[1])["messages"] == [{"seq": 2, "text": "split é"}]
    s.close_sockets()


def test_expect_100_continue(lp_daemon):
    s = Session(lp_daemon)
    payload = json.dumps({"messages": [{"seq": 1, "text": "after continue"}]}).encode()
    head = (
        f"POST /lp/{s.id}/send HTTP/1.1\r\nHost: x\r\nContent-Length: {len(payload)}\r\n"
        "Expect: 100-continue\r\nConnection: close\r\n\r\n"
    ).encode()
    with socket.create_connection((lp_daemon.host, lp_daemon.port), timeout=10) as sock:
        sock.sendall(head)
        assert sock.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(payload)
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 200 ") and reply.endswith(b'{"ack":1}')
    s.close_sockets()


def test_server_close_reaches_the_client_and_its_echo_the_application(lp_daemon):
    s = Session(lp_daemon)
    s.send("close 4010 server says bye")
    s.poll_until(lambda s: "close" in s.messages[-1])
    assert s.messages[-1] == {"seq": 2, "close": 4010, "reason": "server says bye"}
    status, _, doc = s.post({"seq": 2, "close": 4010, "reason": "server says bye"})
    assert status == 200 and doc["closed"] is True
    record = wait_for(lambda: [c for c in closes(lp_daemon) if c["code"] == 4010])
    assert record == [{"protocol": "long-polling", "code": 4010, "reason": "server says bye", "path": "/"}]
    s.close_sockets()


def test_client_close_reaches_on_close_after_its_messages(lp_daemon):
    s = Session(lp_daemon)
    s.start_held_poll()
    status, _, doc = s.post(
        {"seq": 1, "text": "last words"}, {"seq": 2, "close": 4011, "reason": "client bye ✓"}
    )
    assert (status, doc) == (200, {"ack": 2, "closed": True})
    # The held poll is answered with the echo of the close.
    status, _, doc = read_response(s.poll_conn)
    assert doc["messages"][-1] == {"seq": 3, "close": 4011, "reason": "client bye ✓"}
    assert doc["messages"][0]["text"] == "last words"
    record = wait_for(lambda: [c for c in closes(lp_daemon) if c["code"] == 4011])
    assert record[0]["reason"] == "client bye ✓"
    # The client retries the close (it lost the answer): still "closed", not an unknown session.
    status, _, doc = s.post({"seq": 2, "close": 4011, "reason": "client bye ✓"})
    assert (status, doc) == (200, {"ack": 2, "closed": True})
    assert len([c for c in closes(lp_daemon) if c["code"] == 4011]) == 1
    s.close_sockets()


def test_expired_session(daemon_factory):
    d = daemon_factory("--longpoll-expire", "1", "--longpoll-hold", "5", app=APP)
    s = Session(d, "/expiring")
    started = time.monotonic()
    record = wait_for(lambda: [c for c in closes(d) if c["path"] == "/expiring"], timeout=10)
    assert record == [
        {"protocol": "long-polling", "code": 1006, "reason": "session expired", "path": "/expiring"}
    ]
    assert time.monotonic() - started >= 0.9
    status, doc = s.poll()
    assert status == 404 and doc["error"] == "unknown session"
    # A session whose poll is held does not expire.
    held = Session(d, "/held")
    held.start_held_poll()
    time.sleep(2.0)  # twice the expiry time
    assert not [c for c in closes(d) if c["path"] == "/held"]
    status, _, doc = read_response(held.poll_conn)
    assert status == 200
    s.close_sockets()
    held.close_sockets()


def test_session_limit_is_503(daemon_factory):
    d = daemon_factory("--longpoll-max-sessions", "2", app=APP)
    a, b = Session(d), Session(d)
    conn = http.client.HTTPConnection(d.host, d.port, timeout=10)
    status, headers, doc = request(conn, "POST", "/lp/open")
    assert status == 503 and doc["error"] == "too many sessions" and headers["retry-after"]
    a.post({"seq": 1, "close": 1000, "reason": ""})
    wait_for(lambda: len(closes(d)) == 1)
    status, _, doc = request(conn, "POST", "/lp/open")
    assert status == 200
    b.close_sockets()


def test_queue_limit_closes_with_1008(daemon_factory):
    d = daemon_factory("--longpoll-max-queue", "50000", app=APP)
    s = Session(d)
    s.send("burst 100 1000")  # about 100 kB for a client that does not poll
    record = wait_for(lambda: closes(d))
    assert record == [{"protocol": "long-polling", "code": 1008, "reason": "slow consumer", "path": "/"}]
    status, doc = s.poll()
    assert status == 200 and doc["messages"][-1]["close"] == 1008


def test_broadcast_reaches_websocket_and_long_polling_alike(lp_daemon):
    ws = websocket.create_connection(lp_daemon.url, timeout=10)
    assert ws.recv() == "welcome rfc6455"
    s = Session(lp_daemon)
    ws.send("broadcast everyone ✓")
    assert ws.recv() == "everyone ✓"
    s.poll_until(lambda s: "everyone ✓" in s.texts())
    s.send("broadcast back")
    assert ws.recv() == "back"
    ws.close()
    s.close_sockets()


# -- CORS ------------------------------------------------------------------------


def preflight(daemon, origin, path="/lp/open"):
    conn = http.client.HTTPConnection(daemon.host, daemon.port, timeout=10)
    status, headers, doc = request(
        conn,
        "OPTIONS",
        path,
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    )
    conn.close()
    return status, headers, doc


def test_cors_preflight_from_an_allowed_origin(cors_daemon):
    for origin in ("http://game.example", "https://other.example:8443"):
        status, headers, _ = preflight(cors_daemon, origin)
        assert status == 204
        assert headers["access-control-allow-origin"] == origin
        assert "POST" in headers["access-control-allow-methods"]
        assert "content-type" in headers["access-control-allow-headers"].lower()
        assert headers["access-control-allow-credentials"] == "true"
        assert "Origin" in headers["vary"]


def test_cors_preflight_from_a_refused_origin(cors_daemon):
    for origin in ("http://evil.example", "https://game.example", "http://other.example:8443", "null"):
        status, headers, doc = preflight(cors_daemon, origin)
        assert status == 403, origin
        assert "access-control-allow-origin" not in headers
        assert doc["error"] == "origin not allowed"


def test_cors_requests_follow_the_origin_policy(cors_daemon):
    game = {"Origin": "http://game.example"}
    s = Session(cors_daemon, headers=game)
    conn = http.client.HTTPConnection(cors_daemon.host, cors_daemon.port, timeout=10)
    status, headers, _ = request(conn, "POST", "/lp/open", headers=game)
    assert status == 200 and headers["access-control-allow-origin"] == "http://game.example"
    # A refused origin gets neither a session nor access to an existing one.
    status, headers, doc = request(conn, "POST", "/lp/open", headers={"Origin": "http://evil.example"})
    assert status == 403 and "access-control-allow-origin" not in headers and doc["status"] == 403
    status, _, _ = request(conn, "GET", f"/lp/{s.id}/poll?ack=1", headers={"Origin": "http://evil.example"})
    assert status == 403
    # Opening needs an Origin here; polls and posts of a session do not (browsers omit
    # Origin on same-origin GETs): the session id was given to an allowed page.
    assert request(conn, "POST", "/lp/open")[0] == 403
    s.headers = {}
    s.send("no origin needed")
    s.poll_until(lambda s: s.texts()[-1] == "no origin needed")
    conn.close()
    s.close_sockets()


def test_cors_when_every_origin_is_allowed(lp_daemon):
    """No --allowed-origins: any page may use long-polling, but without cookies (no credentials)."""
    status, headers, _ = preflight(lp_daemon, "http://anywhere.example")
    assert status == 204 and headers["access-control-allow-origin"] == "http://anywhere.example"
    assert "access-control-allow-credentials" not in headers
    conn = http.client.HTTPConnection(lp_daemon.host, lp_daemon.port, timeout=10)
    # Same origin (Origin matches Host): no CORS headers needed.
    same = f"http://{lp_daemon.host}:{lp_daemon.port}"
    status, headers, _ = request(conn, "POST", "/lp/open", headers={"Origin": same})
    assert status == 200 and "access-control-allow-origin" not in headers
    conn.close()


def test_shutdown_closes_sessions_with_1001_without_waiting(daemon_factory):
    d = daemon_factory(app=APP)
    held, idle = Session(d, "/held"), Session(d, "/idle")
    held.start_held_poll()
    started = time.monotonic()
    assert d.stop() == 0
    assert time.monotonic() - started < 3  # idle keep-alive connections do not hold the exit up
    status, headers, doc = read_response(held.poll_conn)
    assert status == 200 and headers["connection"] == "close"
    assert doc["messages"][-1] == {"seq": 2, "close": 1001, "reason": "server shutting down"}
    log = d.log()
    assert "close long-polling 127.0.0.1" in log
    assert log.count("code=1001 reason='server shutting down'") == 2
    held.close_sockets()
    idle.close_sockets()


def test_cors_follows_a_reloaded_allow_list(daemon_factory, tmp_path):
    config = tmp_path / "wsdaemon.conf"
    config.write_text("[wsdaemon]\nallowed_origins = http://a.example\n")
    d = daemon_factory("--config", str(config), app=APP)
    assert preflight(d, "http://a.example")[0] == 204
    assert preflight(d, "http://b.example")[0] == 403
    config.write_text("[wsdaemon]\nallowed_origins = http://b.example\n")
    d.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "configuration reloaded" in d.log())
    assert preflight(d, "http://b.example")[0] == 204
    assert preflight(d, "http://a.example")[0] == 403


def test_pipelined_request_behind_a_held_poll_is_served_after_it(lp_daemon):
    s = Session(lp_daemon)
    poll = f"GET /lp/{s.id}/poll?ack=1 HTTP/1.1\r\nHost: x\r\n\r\n".encode()
    status = b"GET /status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    started = time.monotonic()
    reply = raw_http(lp_daemon.host, lp_daemon.port, poll + status)
    assert time.monotonic() - started > 0.8  # the poll was held for the hold time first
    first, _, rest = reply.partition(b"\r\n\r\n")
    assert first.startswith(b"HTTP/1.1 200 ")
    assert rest.startswith(b'{"ack":0,"messages":[]}HTTP/1.1 200 ')
    assert json.loads(rest.split(b"\r\n\r\n", 1)[1])["long_polling"]["sessions"] >= 1
    s.close_sockets()


def test_a_poll_whose_client_went_away_lets_the_session_expire(daemon_factory):
    d = daemon_factory("--longpoll-expire", "1", "--longpoll-hold", "30", app=APP)
    s = Session(d, "/gone")
    s.start_held_poll()
    s.poll_conn.close()  # the client vanished while its poll was held
    record = wait_for(lambda: [c for c in closes(d) if c["path"] == "/gone"], timeout=10)
    assert record[0]["code"] == 1006 and record[0]["reason"] == "session expired"
    s.close_sockets()
