"""hixie-76 and hixie-75 end to end: the real daemon process and our own minimal clients.

``hixie_client`` is checked against an independent server in ``test_hixie_faye.py``.
The codes ``on_close`` receives are watched through an observer connection
(see ``hixie_app``).
"""

from __future__ import annotations

import json
import signal
import socket
import time
import urllib.request
import uuid

import pytest
import websocket

from tests.support.daemon_process import Daemon
from tests.support.hixie_client import CLOSED, HandshakeFailed, HixieClient

APP = "tests.support.hixie_app:app"
LIMIT = 4096

DRAFTS = [76, 75]


@pytest.fixture(scope="module")
def shared():
    """One daemon for the tests that need no special options (small message limit)."""
    d = Daemon("--max-message-size", str(LIMIT), "--handshake-timeout", "2", app=APP)
    yield d
    d.stop()


class Observer:
    """An RFC 6455 connection on /observe that hears about every close."""

    def __init__(self, daemon: Daemon) -> None:
        self.ws = websocket.create_connection(daemon.url + "observe", timeout=10)
        assert self.ws.recv() == "observing"

    def closed(self, protocol: str, path: str, timeout: float = 10.0) -> tuple[int, str]:
        """Wait for the close of the connection on ``path``; return its code and reason."""
        prefix = f"closed {protocol} {path} "
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.ws.settimeout(max(0.1, deadline - time.monotonic()))
            note = self.ws.recv()
            if note.startswith(prefix):
                code, _, reason = note[len(prefix) :].partition(" ")
                return int(code), reason
        raise TimeoutError(f"no close reported for {path}")

    def close(self) -> None:
        self.ws.close()


@pytest.fixture
def observer(shared):
    obs = Observer(shared)
    yield obs
    obs.close()


def unique_path() -> str:
    return f"/t/{uuid.uuid4().hex[:12]}"


def connect(daemon: Daemon, draft: int, path: str | None = None, **kwargs) -> HixieClient:
    """An open client that has read the greeting."""
    client = HixieClient(daemon.host, daemon.port, draft, path=path or unique_path(), **kwargs)
    client.handshake()
    greeting = client.recv()
    assert greeting == f"open hixie-{draft} {kwargs.get('subprotocol')}", greeting
    return client


def assert_alive(daemon: Daemon) -> None:
    """Other connections are unaffected: a fresh one still echoes."""
    with connect(daemon, 76) as c:
        c.send_text("still alive")
        assert c.recv() == "still alive"


# --- handshake ------------------------------------------------------------------


def test_hixie76_key3_in_separate_packets(shared):
    """The server answers only once the 8-byte key3 is complete, however it arrives."""
    for parts in ([], [4], [1, 2, 7]):
        path = unique_path()
        with HixieClient(shared.host, shared.port, 76, path=path + "?room=1") as c:
            c.handshake(key3_parts=parts)  # asserts silence before each part, checks the answer
            assert c.recv() == "open hixie-76 None"
            c.send_text("after key3")
            assert c.recv() == "after key3"


def test_hixie76_key3_glued_to_the_first_frames(shared):
    frames = b"\x00first\xff\x00second \xe2\x98\x83\xff"
    with HixieClient(shared.host, shared.port, 76, path=unique_path()) as c:
        c.handshake(glue=frames)
        assert [c.recv() for _ in range(3)] == ["open hixie-76 None", "first", "second ☃"]


def test_hixie76_key3_glued_to_the_head_and_a_partial_frame(shared):
    with HixieClient(shared.host, shared.port, 76, path=unique_path()) as c:
        c.handshake(key3_parts=[5], glue=b"\x00par")
        assert c.recv() == "open hixie-76 None"
        c.send_raw(b"tial\xff")
        assert c.recv() == "partial"


def test_hixie76_draft_example_keys(shared):
    """The draft's section 1.3 keys give its answer on the wire (the client checks it)."""
    with HixieClient(
        shared.host,
        shared.port,
        76,
        path="/demo",
        key1="4 @1  46546xW%0l 1 5",
        key2="12998 5 Y3 1  .P00",
        key3=b"^n:ds[4U",
    ) as c:
        c.sock.sendall(c.request_head() + c.key3)
        head = b""
        while b"\r\n\r\n" not in head:
            head += c.sock.recv(1)
        assert head.startswith(b"HTTP/1.1 101 WebSocket Protocol Handshake\r\n")
        answer = b""
        while len(answer) < 16:
            answer += c.sock.recv(16 - len(answer))
        assert answer == b"8jKS'y:G*Co,Wxa-"


def test_hixie75_handshake(shared):
    with HixieClient(shared.host, shared.port, 75, path=unique_path() + "?a=b") as c:
        c.handshake()  # checks the status line and the unprefixed WebSocket-* headers
        assert "sec-websocket-location" not in c.headers
        assert c.recv() == "open hixie-75 None"


@pytest.mark.parametrize("draft", DRAFTS)
def test_subprotocol(shared, draft):
    with connect(shared, draft, subprotocol="chat.v1") as c:
        prefix = "sec-websocket-" if draft == 76 else "websocket-"
        assert c.headers[prefix + "protocol"] == "chat.v1"
    with HixieClient(shared.host, shared.port, draft, path=unique_path(), subprotocol="nope") as c:
        c.handshake()
        assert not any(name.endswith("protocol") for name in c.headers)
        assert c.recv() == f"open hixie-{draft} None"


@pytest.mark.parametrize(
    "key1,key2,reason",
    [
        ("3e6b6341780", "17  9 G`ZD9   2 2b 7X 3 /r90", "no spaces"),
        ("3e6b263  4 17 80", "17  9 G`ZD9   2 2b 7X 3 /r91", "not a multiple"),
        ("42949672 96", "17  9 G`ZD9   2 2b 7X 3 /r90", "32 bits"),
        ("no digits", "17  9 G`ZD9   2 2b 7X 3 /r90", "no digits"),
    ],
)
def test_hixie76_malformed_keys_get_400(shared, key1, key2, reason):
    with HixieClient(shared.host, shared.port, 76, key1=key1, key2=key2) as c:
        with pytest.raises(HandshakeFailed) as info:
            c.handshake()
        assert info.value.status == 400
        assert reason in info.value.body.decode()
    assert_alive(shared)


@pytest.mark.parametrize(
    "headers,origin,reason",
    [
        ([], "http://evil\x01.example", "Origin"),
        ([], "http://caf\xe9.example", "Origin"),
        ([("Sec-WebSocket-Protocol", "a\x7fb")], "http://127.0.0.1", "Sec-WebSocket-Protocol"),
    ],
)
def test_reflected_values_with_control_characters_get_400(shared, headers, origin, reason):
    with HixieClient(shared.host, shared.port, 76, origin=origin, headers=headers) as c:
        with pytest.raises(HandshakeFailed) as info:
            c.handshake()
        assert info.value.status == 400
        assert reason in info.value.body.decode()
        assert b"evil" not in info.value.body


def test_bad_host_gets_400(shared):
    with socket.create_connection((shared.host, shared.port), timeout=10) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: a b\x0b\r\nUpgrade: WebSocket\r\nConnection: Upgrade\r\n\r\n")
        response = recv_all(s)
    assert response.startswith(b"HTTP/1.1 400 "), response
    assert b"Host" in response


def test_hixie76_key3_never_arriving_gets_408(shared):
    """The handshake timeout (2 s here) bounds the wait for key3."""
    path = unique_path()
    with HixieClient(shared.host, shared.port, 76, path=path) as c:
        start = time.monotonic()
        c.sock.sendall(c.request_head() + c.key3[:5])
        response = c.expect_eof(timeout=15)
        elapsed = time.monotonic() - start
    assert response.startswith(b"HTTP/1.1 408 "), response
    assert b"key3" in response
    assert 1.5 < elapsed < 12, elapsed
    assert path not in shared.log()  # never opened, so never reported


def recv_all(s: socket.socket) -> bytes:
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            return data
        data += chunk


# --- messages -------------------------------------------------------------------

UNICODE = [
    "",
    "plain ascii",
    "héllo wörld",
    "☃ snowman, € euro",
    "𝄞 clef and 😀 emoji",
    "e\u0301 combining, \u202eRTL override",
    "日本語のテキスト",
    "nul \x00 inside",
    "\uffff and \ufffd",
]


@pytest.mark.parametrize("draft", DRAFTS)
def test_unicode_round_trip(shared, draft):
    with connect(shared, draft) as c:
        for text in UNICODE:
            c.send_text(text)
            assert c.recv() == text


@pytest.mark.parametrize("draft", DRAFTS)
def test_messages_split_at_every_offset(shared, draft):
    first = b"\x00h\xc3\xa9llo \xe2\x98\x83 \xf0\x9d\x84\x9e\xff"  # "héllo ☃ 𝄞"
    data = first + b"\x80\x03bin" + b"\x00second\xff"  # a discarded binary frame between
    with connect(shared, draft) as c:
        for cut in range(1, len(data)):
            c.send_raw(data[:cut])
            if cut < len(first):
                c.expect_silence(0.02)  # no echo of an incomplete frame
            c.send_raw(data[cut:])
            assert c.recv() == "héllo ☃ 𝄞", cut
            assert c.recv() == "second", cut


@pytest.mark.parametrize("draft", DRAFTS)
def test_several_messages_in_one_packet(shared, draft):
    messages = [f"message {i} ☃" for i in range(300)]
    with connect(shared, draft) as c:
        c.send_raw(b"".join(b"\x00" + m.encode() + b"\xff" for m in messages))
        assert [c.recv() for _ in messages] == messages


@pytest.mark.parametrize("draft", DRAFTS)
def test_send_bytes_is_a_type_error_for_the_application(shared, draft):
    with connect(shared, draft) as c:
        c.send_text("send-bytes")
        answer = c.recv()
        assert answer.startswith(f"TypeError: a hixie-{draft} connection carries text only"), answer
        c.send_text("still open")
        assert c.recv() == "still open"


# --- closing --------------------------------------------------------------------


def test_hixie76_client_closing_handshake_reports_1000(shared, observer):
    path = unique_path()
    with connect(shared, 76, path) as c:
        c.send_text("bye")
        assert c.recv() == "bye"
        c.close_handshake()  # sends 0xFF 0x00, expects the server's and its EOF
    assert observer.closed("hixie-76", path) == (1000, "")


def test_hixie76_server_closing_handshake(shared, observer):
    path = unique_path()
    with connect(shared, 76, path) as c:
        c.send_text("close")
        assert c.recv() is CLOSED  # the server's 0xFF 0x00
        c.answer_close()
    assert observer.closed("hixie-76", path) == (1000, "")


def test_hixie76_dropped_connection_reports_1006(shared, observer):
    path = unique_path()
    with connect(shared, 76, path) as c:
        c.send_text("x")
        assert c.recv() == "x"
    assert observer.closed("hixie-76", path) == (1006, "connection closed without a closing handshake")


def test_hixie75_tcp_close_is_its_clean_close(shared, observer):
    path = unique_path()
    with connect(shared, 75, path) as c:
        c.send_text("x")
        assert c.recv() == "x"
    assert observer.closed("hixie-75", path) == (1000, "")
    path = unique_path()
    with connect(shared, 75, path) as c:
        c.send_text("close")
        assert c.expect_eof() == b""  # -75 has no closing frame: the server just closes TCP
    assert observer.closed("hixie-75", path) == (1000, "")


@pytest.mark.parametrize("draft", DRAFTS)
def test_message_over_the_limit_closes_with_1009(shared, observer, draft):
    path = unique_path()
    with connect(shared, draft, path) as c:
        c.send_text("a" * LIMIT)
        assert c.recv() == "a" * LIMIT
        c.send_text("b" * (LIMIT + 1))
        rest = c.expect_eof()
        assert rest == (b"\xff\x00" if draft == 76 else b"")
    assert observer.closed(f"hixie-{draft}", path) == (1009, f"message larger than {LIMIT} bytes")
    assert_alive(shared)


@pytest.mark.parametrize("draft", DRAFTS)
@pytest.mark.parametrize("frame_type", [b"\x00", b"\x42"])
def test_never_terminated_frame_is_cut_at_the_limit(shared, observer, draft, frame_type):
    """A frame without its 0xFF fails as soon as it passes the limit, not when (never) it ends."""
    path = unique_path()
    with connect(shared, draft, path) as c:
        c.send_raw(frame_type + b"z" * LIMIT)
        c.expect_silence(0.2)  # still within the limit: nothing happens
        c.send_raw(b"z" * 10)
        c.expect_eof()
    assert observer.closed(f"hixie-{draft}", path)[0] == 1009
    assert_alive(shared)


@pytest.mark.parametrize("draft", DRAFTS)
def test_invalid_utf8_closes_with_1007(shared, observer, draft):
    path = unique_path()
    with connect(shared, draft, path) as c:
        c.send_raw(b"\x00bad \xc3\x28 bytes")  # fails before the frame's 0xFF arrives
        c.expect_eof()
    assert observer.closed(f"hixie-{draft}", path) == (1007, "invalid UTF-8 in text message")


@pytest.mark.parametrize("draft", DRAFTS)
def test_callback_exception_closes_with_1011(shared, observer, draft):
    path = unique_path()
    with connect(shared, draft, path) as c:
        c.send_text("raise")
        c.expect_eof()
    assert observer.closed(f"hixie-{draft}", path) == (1011, "internal server error")
    assert_alive(shared)


@pytest.mark.parametrize("draft", DRAFTS)
def test_slow_consumer_is_dropped_with_1008(daemon_factory, draft):
    d = daemon_factory("--max-write-buffer", str(1024 * 1024), app=APP)
    obs = Observer(d)
    try:
        path = unique_path()
        with connect(d, draft, path) as c:
            c.send_text("flood:400")  # 25 MiB for a client that reads nothing
            assert obs.closed(f"hixie-{draft}", path) == (1008, "slow consumer")
        assert_alive(d)
    finally:
        obs.close()


@pytest.mark.parametrize("draft", DRAFTS)
def test_idle_connection_is_closed(daemon_factory, draft):
    d = daemon_factory("--idle-timeout", "1", app=APP)
    obs = Observer(d)
    try:
        # An active connection outlives the timeout...
        with connect(d, draft) as busy:
            for i in range(6):
                busy.send_text(f"tick {i}")
                assert busy.recv() == f"tick {i}"
                time.sleep(0.3)  # pacing the client, not synchronisation
        # ...a silent one is closed (-76 with its closing frame) within a few sweeps.
        path = unique_path()
        with connect(d, draft, path) as idle:
            start = time.monotonic()
            rest = idle.expect_eof(timeout=15)
            elapsed = time.monotonic() - start
        assert rest == (b"\xff\x00" if draft == 76 else b"")
        assert 0.8 < elapsed < 10, elapsed
        assert obs.closed(f"hixie-{draft}", path) == (1006, "idle timeout")
    finally:
        obs.close()


def test_shutdown_runs_the_closing_handshake(daemon_factory):
    d = daemon_factory(app=APP)
    c76 = connect(d, 76)
    c75 = connect(d, 75)
    try:
        d.proc.send_signal(signal.SIGTERM)
        assert c76.recv() is CLOSED  # 0xFF 0x00 from the server
        c76.answer_close()
        c76.close()
        assert c75.expect_eof() == b""
        c75.close()
        assert d.proc.wait(15) == 0
    finally:
        c76.close()
        c75.close()
    log = d.log()
    assert "close hixie-76" in log and "close hixie-75" in log
    assert log.count("code=1001 reason='server shutting down'") == 2, log


# --- broadcast to every transport -----------------------------------------------


def test_broadcast_reaches_rfc6455_hixie76_and_hixie75(daemon_factory):
    d = daemon_factory(app="wsdaemon.apps.broadcast:app")
    rfc = [websocket.create_connection(d.url, timeout=10) for _ in range(2)]
    h76 = [HixieClient(d.host, d.port, 76) for _ in range(2)]
    h75 = [HixieClient(d.host, d.port, 75) for _ in range(2)]
    try:
        for c in h76 + h75:
            c.handshake()
        with urllib.request.urlopen(d.http_url + "/status", timeout=10) as resp:
            status = json.load(resp)
        assert status["by_protocol"] == {"rfc6455": 2, "hixie-76": 2, "hixie-75": 2}

        senders = [("rfc6455", lambda m: rfc[0].send(m)), ("hixie-76", h76[1].send_text)]
        senders.append(("hixie-75", h75[0].send_text))
        for name, send in senders:
            text = f"from {name}: héllo ☃"
            send(text)
            for ws in rfc:
                assert ws.recv() == text
            for c in h76 + h75:
                assert c.recv() == text

        # A binary broadcast reaches the RFC 6455 clients and skips the hixie ones,
        # whose next message is the text that follows.
        rfc[1].send_binary(b"\x00\xffbinary")
        for ws in rfc:
            assert ws.recv() == b"\x00\xffbinary"
        rfc[1].send("text again")
        for ws in rfc:
            assert ws.recv() == "text again"
        for c in h76 + h75:
            assert c.recv() == "text again"
    finally:
        for ws in rfc:
            ws.close()
        for c in h76 + h75:
            c.close()


def test_broadcast_count_skips_hixie_for_binary(daemon_factory):
    d = daemon_factory(app=APP)
    with connect(d, 76) as a, connect(d, 75) as b:
        ws = websocket.create_connection(d.url, timeout=10)
        try:
            assert ws.recv() == "open rfc6455 None"
            ws.send("broadcast-bytes:xyz")
            assert ws.recv() == b"xyz"
            assert ws.recv() == "sent to 1"
            ws.send("broadcast:all")
            assert ws.recv() == "all"
            assert ws.recv() == "sent to 3"
            assert a.recv() == "all"
            assert b.recv() == "all"
        finally:
            ws.close()
