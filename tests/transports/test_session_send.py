"""Session.send without a carrier: what it keeps, and what it refuses, for every kind of message."""

from types import SimpleNamespace

import pytest

from wsdaemon.proto.codes import OPEN
from wsdaemon.transports.session import SessionManager


@pytest.fixture
def session():
    closed = []
    host = SimpleNamespace(
        settings=SimpleNamespace(resume_buffer=8),
        loop=None,
        connection_closed=lambda conn: None,
        connection_log=SimpleNamespace(enabled=True, closed=lambda conn, code, reason: None),
        app=SimpleNamespace(handle_close=lambda conn, code, reason: closed.append(code)),
        closed=closed,
    )
    conn = SessionManager(host).create(None, None)
    conn.state = OPEN
    return conn


def test_send_keeps_str_and_bytes_and_makes_bytes_of_bytes_likes(session):
    subclass = type("Blob", (bytes,), {})
    for message in ("ab", b"c", bytearray(b"d"), memoryview(b"e"), subclass(b"f")):
        session.send(message)
    assert session.proto.entries == ["ab", b"c", b"d", b"e", b"f"]
    assert [type(m) for m in session.proto.entries[1:]] == [bytes] * 4
    session.send(bytearray(b"g"), key="k")
    assert session.proto.entries[-1] == b"g" and type(session.proto.entries[-1]) is bytes


def test_send_refuses_anything_else_before_counting_it(session):
    for message in (3, None, type("Text", (str,), {})("x")):
        for flags in ({}, {"key": "k"}, {"volatile": True}):
            with pytest.raises(TypeError, match="send\\(\\) takes str or bytes, not"):
                session.send(message, **flags)
    assert session.proto.sent_seq == 0 and session.proto.entries == []


def test_a_message_past_the_resume_buffer_ends_the_session(session):
    session.send("1234")
    session.send(b"5678")
    assert session.proto.bytes == 8
    session.send(bytearray(b"9"))  # one byte too many: 1008, nothing kept
    assert session.close_code == 1008 and session.host.closed == [1008]
    assert session.proto.close_seq == 3 and b"9" not in session.proto.entries  # the close came third
