"""The --processes handover in one process: two real servers (slots 0 and 1) sharing ProcessSlots.

Server A (slot 0) reads a request naming slot 1's session and hands the socket over;
server B (slot 1) adopts it and answers. Each loop is turned by the test.
"""

from __future__ import annotations

import array
import json
import os
import socket

import pytest

from tests.support.inprocess import connect, make_server, status_of, turn
from wsdaemon.net.handoff import HANDOFF_MAX, HandoffReceiver, ProcessSlots
from wsdaemon.net.loop import EVENT_READ
from wsdaemon.transports.handoff import Handoff, request_slot, session_slot
from wsdaemon.transports.http import HttpConnection


@pytest.fixture
def pair():
    _pending.clear()
    slots = ProcessSlots(2)
    a, b = make_server(), make_server()
    ha, hb = Handoff(a, slots, 0), Handoff(b, slots, 1)
    for server, handoff, slot in ((a, ha, 0), (b, hb, 1)):
        slots.started(slot, os.getpid())
        receiver = HandoffReceiver(slots.receivers[slot], handoff.adopt)
        server.loop.register(slots.receivers[slot], EVENT_READ, receiver)
    yield slots, a, b, ha, hb
    for server in (a, b):
        server.close()
    slots.close()


_pending: dict[int, bytes] = {}


def read_response(client: socket.socket, loops, timeout_turns: int = 200) -> tuple[bytes, bytes]:
    """Turn the loops until a whole response (with Content-Length) arrived on ``client``."""
    data = _pending.pop(client.fileno(), b"")
    for _ in range(timeout_turns):
        for loop in loops:
            turn(loop)
        try:
            data += client.recv(1 << 20)
        except BlockingIOError:
            pass
        head, sep, body = data.partition(b"\r\n\r\n")
        if sep:
            length = next(
                int(line.split(b":")[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length")
            )
            if len(body) >= length:
                _pending[client.fileno()] = body[length:]
                return head, body[:length]
    raise AssertionError(f"no whole response: {data[:300]!r}")


def open_session(server) -> str:
    conn, client = connect(server)
    client.send(b"POST /lp/open/ HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
    head, body = read_response(client, [server.loop])
    assert status_of(head) == 200, head
    client.close()
    return json.loads(body)["session"]


def post(session_id: str, text: str, seq: int = 1) -> bytes:
    body = json.dumps({"messages": [{"seq": seq, "text": text}]}).encode()
    return (
        f"POST /lp/{session_id}/send HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        + body
    )


def test_session_ids_carry_the_slot_and_requests_name_it(pair):
    _, a, b, _, _ = pair
    sid = open_session(b)
    assert sid.startswith("1~") and session_slot(sid) == 1
    assert session_slot("abc") is None and session_slot("x~abc") is None
    assert open_session(a).startswith("0~")


def test_a_post_read_by_the_wrong_child_is_served_by_its_owner(pair):
    slots, a, b, ha, hb = pair
    sid = open_session(b)
    conn, client = connect(a)
    client.send(post(sid, "hello"))
    head, body = read_response(client, [a.loop, b.loop])
    assert status_of(head) == 200 and json.loads(body)["ack"] == 1
    assert conn.handed_over and ha.sent == 1 and hb.adopted == 1
    assert len(a.admission.clients) == 0 and len(b.admission.clients) == 1  # counted where served
    (session,) = b.sessions.sessions.values()
    assert session.proto.received_seq == 1


def test_an_unsent_answer_leaves_before_the_handed_over_one(pair):
    slots, a, b, ha, hb = pair
    sid = open_session(b)
    conn, client = connect(a, size=1 << 20)
    first = b"GET /status HTTP/1.1\r\nHost: x\r\n\r\n"
    client.send(first + post(sid, "second"))  # pipelined: A answers the first, then hands over
    head, body = read_response(client, [a.loop, b.loop])
    assert json.loads(body)["pid"] == os.getpid()  # A's /status, sent by B from A's bytes
    head2, body2 = read_response(client, [a.loop, b.loop])
    assert status_of(head2) == 200 and json.loads(body2)["ack"] == 1
    assert hb.adopted == 1


def test_a_dead_slot_is_answered_503_by_the_child_that_read_it(pair, caplog):
    slots, a, b, ha, _ = pair
    sid = open_session(b)
    slots.stopped(1)
    conn, client = connect(a)
    client.send(post(sid, "lost"))
    head, body = read_response(client, [a.loop, b.loop])
    assert status_of(head) == 503 and b"Retry-After: 1" in head
    assert json.loads(body)["error"] == "process 1 is restarting"
    assert ha.refused == 1 and "not handed over: process 1 is restarting" in caplog.text


def test_more_than_the_handover_bound_is_refused(pair):
    slots, a, b, ha, hb = pair
    sid = open_session(b)
    conn, client = connect(a, size=1 << 20)
    big = "x" * (HANDOFF_MAX + 1000)
    client.sendall(post(sid, big))
    head, body = read_response(client, [a.loop, b.loop])
    assert status_of(head) == 503
    assert json.loads(body)["error"] == f"more than {HANDOFF_MAX} bytes to hand over"
    assert hb.adopted == 0


def test_unknown_slots_and_own_slot_are_served_here(pair):
    _, a, b, ha, _ = pair
    for sid in ("0~nothing", "7~nothing", "plain"):
        conn, client = connect(a)
        client.send(post(sid, "x"))
        head, _ = read_response(client, [a.loop, b.loop])
        assert status_of(head) == 404, sid
    assert ha.sent == 0


def test_request_slot_reads_paths_and_resume_parameters():
    from wsdaemon.proto.http11 import parse_request_head

    def slot(target: str) -> int | None:
        return request_slot(parse_request_head(f"GET {target} HTTP/1.1\r\nHost: x".encode()))

    assert slot("/lp/3~abc/poll?ack=1") == 3
    assert slot("/lp/open/game?wsdaemon_session=2~id.tok.5") == 2
    assert slot("/game?wsdaemon_session=1~id.tok.0") == 1
    assert slot("/game?wsdaemon_session=new") is None
    assert slot("/lp/open/game") is None and slot("/") is None


def test_the_receiver_drops_a_malformed_record_and_its_descriptor():
    slots = ProcessSlots(1)
    adopted = []
    receiver = HandoffReceiver(slots.receivers[0], lambda *args: adopted.append(args))
    r, w = socket.socketpair()
    fds = array.array("i", [r.fileno()])
    slots.senders[0].sendmsg([b"garbage"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds)])
    r.close()
    receiver.on_readable()
    assert adopted == []
    w.settimeout(2)
    assert w.recv(10) == b""  # the last copy of the descriptor was closed
    w.close()
    slots.close()


def test_http_connection_hands_over_head_and_following_bytes(pair):
    _, a, *_ = pair
    conn, client = connect(a)
    assert isinstance(conn, HttpConnection)
    conn.parser.feed(b"GET /x HTTP/1.1\r\nHost: y\r\n\r\nNEXT")
    inbound, outbound = conn.handover_bytes()
    assert inbound == b"GET /x HTTP/1.1\r\nHost: y\r\n\r\nNEXT" and outbound == b""
