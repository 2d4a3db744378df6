"""Closing handshakes of every transport, in process: who closes first, what goes on the wire, on_close once.

The server side runs on an EventLoop the test turns; the client end of a small
socket pair is played byte by byte, so each frame of a handshake is checked.
"""

import json
import socket
import struct

import pytest

from tests.support.inprocess import SlowReader, connect, make_server, status_of, turn
from tests.support.rawclient import MASK, handshake_request
from tests.transports.test_swap import hixie_request
from wsdaemon.application import Application
from wsdaemon.proto.rfc6455 import OP_CLOSE, encode_frame


class Recorder:
    """An application that records opens and closes and can close on request."""

    def __init__(self) -> None:
        self.app = Application("recorder")
        self.opened = []
        self.closes = []
        self.app.on_open(self.opened.append)
        self.app.on_close(lambda conn, code, reason: self.closes.append((code, reason)))


@pytest.fixture
def recorder():
    return Recorder()


@pytest.fixture
def server(recorder):
    server = make_server(recorder.app, close_timeout=2.0)
    yield server
    server.close()


def close_payload(code: int, reason: str) -> bytes:
    return struct.pack("!H", code) + reason.encode()


def open_rfc6455(server) -> tuple:
    conn, sock = connect(server)
    client = SlowReader(server.loop, sock)
    client.send(handshake_request("/"))
    assert status_of(client.take_head()) == 101
    return conn, client


def test_rfc6455_client_closes_first(server, recorder):
    _, client = open_rfc6455(server)
    client.send(encode_frame(OP_CLOSE, close_payload(4001, "bye"), mask=MASK))
    client.pump(lambda got: len(got) >= 7)
    assert client.take(7) == b"\x88\x05" + close_payload(4001, "bye")  # the echo
    client.pump(lambda got: client.eof)  # the server half-closes after its close frame
    assert recorder.closes == [(4001, "bye")]
    client.close()


def test_rfc6455_a_completed_handshake_closes_at_once_and_bytes_after_the_close_are_drained(server, recorder):
    _, client = open_rfc6455(server)
    (ws,) = recorder.opened
    client.send(encode_frame(OP_CLOSE, close_payload(1000, ""), mask=MASK))
    client.pump(lambda got: client.eof)
    assert ws.transport_closed and ws not in server.deadlines  # nothing unread: no half-close, no drain
    client.close()
    _, client = open_rfc6455(server)
    ws = recorder.opened[1]
    client.send(encode_frame(OP_CLOSE, close_payload(1000, ""), mask=MASK) + b"\x81\x80" + MASK)
    client.pump(lambda got: client.eof)
    assert not ws.transport_closed and ws in server.deadlines  # bytes after the close: drained to EOF
    client.sock.shutdown(socket.SHUT_WR)
    for _ in range(5):
        turn(server.loop)
    assert ws.transport_closed
    client.close()


def test_rfc6455_server_closes_first(server, recorder):
    _, client = open_rfc6455(server)
    (conn,) = recorder.opened
    conn.close(4000, "game over")
    client.pump(lambda got: len(got) >= 13)
    assert client.take(13) == b"\x88\x0b" + close_payload(4000, "game over")
    assert recorder.closes == []  # not before the client's answer
    client.send(encode_frame(OP_CLOSE, close_payload(1000, ""), mask=MASK))
    client.pump(lambda got: client.eof)
    assert recorder.closes == [(4000, "game over")]  # the server's own code and reason
    client.close()


def test_rfc6455_server_close_without_an_answer_times_out(recorder):
    server = make_server(recorder.app, close_timeout=0.3)
    server.deadlines.start()  # the sweep that make_server's never-started server does not run
    _, client = open_rfc6455(server)
    recorder.opened[0].close(1001, "going away")
    client.pump(lambda got: len(got) >= 14)
    client.pump(lambda got: bool(recorder.closes), timeout=3)
    assert recorder.closes == [(1006, "close timeout")]
    client.close()
    server.close()


def test_hixie76_client_closes_first(server, recorder):
    conn, sock = connect(server)
    client = SlowReader(server.loop, sock)
    head, key3, answer = hixie_request(76)
    client.send(head + key3)
    assert status_of(client.take_head()) == 101
    client.pump(lambda got: len(got) >= 16)
    assert client.take(16) == answer
    client.send(b"\xff\x00")
    client.pump(lambda got: len(got) >= 2)
    assert client.take(2) == b"\xff\x00"
    client.pump(lambda got: client.eof)
    assert recorder.closes == [(1000, "")]
    client.close()


def test_hixie76_server_closes_first(server, recorder):
    conn, sock = connect(server)
    client = SlowReader(server.loop, sock)
    head, key3, answer = hixie_request(76)
    client.send(head + key3)
    client.take_head()
    client.pump(lambda got: len(got) >= 16)
    client.take(16)
    recorder.opened[0].close(4002, "round over")
    client.pump(lambda got: len(got) >= 2)
    assert client.take(2) == b"\xff\x00"
    assert recorder.closes == []
    client.send(b"\xff\x00")
    client.pump(lambda got: client.eof)
    assert recorder.closes == [(4002, "round over")]
    client.close()


def test_hixie75_has_no_closing_frame(server, recorder):
    conn, sock = connect(server)
    client = SlowReader(server.loop, sock)
    head, _, _ = hixie_request(75)
    client.send(head)
    assert status_of(client.take_head()) == 101
    recorder.opened[0].close(4003, "bye")
    client.pump(lambda got: client.eof)
    assert client.received == b""  # nothing but the TCP close
    assert recorder.closes == [(4003, "bye")]
    client.close()


def lp_request(method: str, path: str, body: bytes = b"") -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(body)}\r\n\r\n"
    return head.encode() + body


def test_long_polling_client_closes_first(server, recorder):
    conn, sock = connect(server)
    client = SlowReader(server.loop, sock)
    client.send(lp_request("POST", "/lp/open"))
    head, body = client.take_response()
    session_id = json.loads(body)["session"]
    items = {"messages": [{"seq": 1, "close": 4004, "reason": "left"}]}
    client.send(lp_request("POST", f"/lp/{session_id}/send", json.dumps(items).encode()))
    head, body = client.take_response()
    assert status_of(head) == 200
    assert json.loads(body) == {"ack": 1, "closed": True}
    assert recorder.closes == [(4004, "left")]
    client.send(lp_request("GET", f"/lp/{session_id}/poll?ack=0"))
    head, body = client.take_response()
    (echo,) = json.loads(body)["messages"]
    assert (echo["close"], echo["reason"]) == (4004, "left")
    client.close()


def test_long_polling_server_closes_first(server, recorder):
    conn, sock = connect(server)
    client = SlowReader(server.loop, sock)
    client.send(lp_request("POST", "/lp/open"))
    head, body = client.take_response()
    session_id = json.loads(body)["session"]
    recorder.opened[0].close(4005, "kicked")
    client.send(lp_request("GET", f"/lp/{session_id}/poll?ack=0"))
    head, body = client.take_response()
    (item,) = json.loads(body)["messages"]
    assert (item["close"], item["reason"]) == (4005, "kicked")
    assert recorder.closes == []  # waits for the client's answer
    answer = {"messages": [{"seq": 1, "close": 4005, "reason": "kicked"}]}
    client.send(lp_request("POST", f"/lp/{session_id}/send", json.dumps(answer).encode()))
    client.take_response()
    assert recorder.closes == [(4005, "kicked")]
    client.close()
