"""The session envelope and the resume buffer without sockets (wsdaemon/proto/session.py)."""

import json

import pytest

from wsdaemon.proto.errors import ProtocolError
from wsdaemon.proto.session import (
    BufferFull,
    Close,
    ResumeRequest,
    SequenceGap,
    SessionState,
    base36,
    decode_control,
    encode_ack,
    encode_hello,
    escape_text,
    parse_base36,
    parse_session_param,
)

# -- numbers --------------------------------------------------------------------------


@pytest.mark.parametrize("n", [0, 1, 35, 36, 1295, 1296, 10**6, 36**7 - 1, 2**62])
def test_base36_round_trip(n):
    assert parse_base36(base36(n)) == n


def test_base36_is_short():
    assert base36(35) == "z"
    assert len(base36(36**7 - 1)) == 7  # 78 billion messages in 7 digits + ':' = 8 bytes


@pytest.mark.parametrize("bad", ["", "-1", "1 2", "ä", "1_0", "+1", "1" * 13])
def test_bad_base36_is_a_protocol_error(bad):
    with pytest.raises(ProtocolError):
        parse_base36(bad)


# -- the envelope --------------------------------------------------------------------


def test_a_message_is_its_own_bytes_a_leading_bang_escaped():
    """Numbers are implicit on an ordered WebSocket: the envelope costs 0 bytes, 1 for a leading ``!``."""
    assert escape_text("hello") == "hello"
    assert escape_text("") == ""
    assert escape_text("a!") == "a!"
    assert escape_text("!cmd") == "!!cmd"
    assert decode_control("!!cmd") == (None, 0)  # the receiver drops the first "!"


def test_ack_and_hello():
    assert encode_ack(1296) == "!a100"
    assert decode_control("!a100") == ("ack", 1296)
    hello = encode_hello("S", "T", 4, 9, True, 30.0)
    assert hello.startswith("!h")
    assert json.loads(hello[2:]) == {
        "session": "S",
        "token": "T",
        "ack": 4,
        "next": 9,
        "resumed": True,
        "window": 30.0,
    }


@pytest.mark.parametrize("bad", ["!x1", "!a", "!a-1", "!h{}", "!"])
def test_bad_control_messages(bad):
    with pytest.raises(ProtocolError):
        decode_control(bad)


def test_session_param():
    assert parse_session_param("new") is None
    assert parse_session_param("abc.def.12") == ResumeRequest("abc", "def", 12)
    for bad in ("", "old", "a.b", "a.b.c", "a..1", ".b.1", "a.b.-1", "a.b.1.2"):
        with pytest.raises(ProtocolError):
            parse_session_param(bad)


# -- the resume buffer ---------------------------------------------------------------


def test_numbering_ack_and_replay():
    s = SessionState()
    for text in ("a", "b", "c"):
        s.push(text)
    assert s.unacknowledged() == [(1, "a"), (2, "b"), (3, "c")]
    assert s.acknowledge(2) is False
    assert s.unacknowledged() == [(3, "c")]
    assert s.acknowledge(1) is False  # stale: nothing changes
    assert len(s.entries) == 1 and s.bytes == 1
    with pytest.raises(ProtocolError):
        s.acknowledge(4)


def test_buffer_is_bounded_by_payload_bytes():
    s = SessionState(max_bytes=10)
    s.push("12345")
    s.push(b"12345")
    with pytest.raises(BufferFull):
        s.push("x")
    s.acknowledge(1)
    s.push("xxxxx")


def test_keyed_message_replaced_in_place_until_carried():
    s = SessionState()
    assert s.push("pos 1", key="me") == 1
    assert s.push("pos 2", key="me") == 1 and s.unacknowledged() == [(1, "pos 2")] and s.replaced == 1
    assert s.uncarried
    s.carried(1)
    assert not s.uncarried
    assert s.push("pos 3", key="me") == 2
    # Acknowledged messages are never replaced either.
    s.acknowledge(2)
    assert s.push("pos 4", key="me") == 3
    assert s.unacknowledged() == [(3, "pos 4")]


def test_close_is_the_last_message():
    s = SessionState()
    s.push("bye soon")
    assert s.push_close(4001, "done") == 2
    assert s.close_message == Close(4001, "done")
    assert s.push_close(1000) == 2
    with pytest.raises(ProtocolError):
        s.push("late")
    assert s.acknowledge(2) is True


def test_a_dropping_close_keeps_the_numbering():
    s = SessionState()
    s.push("a")
    s.push("b")
    assert s.push_close(1008, "full", drop=True) == 3
    assert s.unacknowledged() == [(3, Close(1008, "full"))] and s.bytes == 0
    assert s.acknowledge(3) is True and not s.entries


def test_inbound_exactly_once_in_order():
    s = SessionState()
    assert s.receive(1) is True
    assert s.receive(1) is False  # a resend after a reconnect
    assert s.receive(2) is True
    with pytest.raises(SequenceGap) as info:
        s.receive(4)
    assert info.value.expected == 3
