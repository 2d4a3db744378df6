"""The C accelerator gives exactly what the Python code gives: frames built, frames parsed."""

import os
import sys
from contextlib import contextmanager

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wsdaemon.proto import rfc6455, session
from wsdaemon.proto.accel import speedups
from wsdaemon.proto.errors import ProtocolError
from wsdaemon.proto.rfc6455 import EV_ERROR, FrameParser, encode_frame

MASK = b"\x37\xfa\x21\x3d"
SIZES = (0, 1, 125, 126, 127, 65535, 65536, 70000)


def test_the_accelerator_is_built_unless_turned_off():
    turned_off = os.environ.get("WSDAEMON_PURE_PYTHON") or os.environ.get("WSDAEMON_NO_SPEEDUPS")
    assert (speedups is None) == bool(turned_off)


def test_text_and_binary_frames_match_the_python_encoder():
    for n in SIZES:
        payload = bytes(range(256)) * (n // 256) + bytes(n % 256)
        assert speedups.text_frame(payload) == encode_frame(rfc6455.OP_TEXT, payload)
        assert speedups.binary_frame(payload) == encode_frame(rfc6455.OP_BINARY, payload)
        assert speedups.binary_frame(bytearray(payload)) == encode_frame(rfc6455.OP_BINARY, payload)
        assert speedups.binary_frame(memoryview(payload)) == encode_frame(rfc6455.OP_BINARY, payload)


def test_message_frames_match_the_python_encoder():
    for message in ["", "plain", "é" * 70, "ü" * 40000, b"", b"\x00\xff", b"x" * 70000]:
        assert speedups.message_frame(message) == rfc6455._message_frame_python(message)
    assert speedups.message_frame(bytearray(b"ab")) == rfc6455._message_frame_python(bytearray(b"ab"))
    assert speedups.message_frame(memoryview(b"ab")) == rfc6455._message_frame_python(memoryview(b"ab"))
    for fn in (speedups.message_frame, rfc6455._message_frame_python):
        try:
            fn(3)
        except TypeError as exc:
            assert str(exc) == "send() takes str or bytes, not int"
        else:
            raise AssertionError("no TypeError")


def test_session_frames_match_the_python_envelope():
    messages = ["", "!", "!a12", "!!x", "plain", "é" * 70, "ü" * 40000, b"", b"!binary stays", b"x" * 70000]
    for message in messages:
        assert speedups.session_frame(message) == session._rfc6455_frame_python(message)


def test_a_session_frame_of_something_else_is_a_type_error():
    try:
        speedups.session_frame(3)
    except TypeError as exc:
        assert "int" in str(exc)
    else:
        raise AssertionError("no TypeError")


@contextmanager
def python_scan_only():
    saved = rfc6455._scan_frames
    rfc6455._scan_frames = None
    try:
        yield
    finally:
        rfc6455._scan_frames = saved


def frame(spec) -> bytes:
    kind, payload, fin, masked, rsv = spec
    data = bytearray(encode_frame(kind, payload, fin=fin, mask=MASK if masked else None))
    data[0] |= rsv << 4
    return bytes(data)


payloads = st.one_of(
    st.binary(max_size=300),
    st.text(max_size=100).map(lambda t: t.encode("utf-8")),
    st.sampled_from([b"\xff\xfe", b"!a1", "é".encode()[:1], b"x" * 70000, b"y" * 126]),
)
frames = st.tuples(
    st.sampled_from([0, 1, 1, 1, 2, 2, 2, 8, 9, 10, 3]),
    payloads,
    st.sampled_from([True, True, True, False]),  # fin
    st.sampled_from([True, True, True, False]),  # masked
    st.sampled_from([0, 0, 0, 0, 1, 4]),
)


def events_of(data: bytes, cuts: list[int], budget: int, require_mask: bool, max_size: int) -> list:
    parser = FrameParser(max_message_size=max_size, require_mask=require_mask)
    parser.budget = budget
    out = []
    points = sorted({c % (len(data) + 1) for c in cuts}) + [len(data)]
    start = 0
    for point in points:
        out += parser.feed(data[start:point])
        while parser.backlog:
            out += parser.feed(b"")
        start = point
        out.append(("buffered", parser.buffered))
    return [(kind, (value.code, value.reason) if kind == EV_ERROR else value) for kind, value in out]


@settings(max_examples=400, deadline=None)
@given(
    st.lists(frames, max_size=12),
    st.lists(st.integers(min_value=0, max_value=1 << 20), max_size=6),
    st.sampled_from([0, 0, 1, 7, 200, 16384]),
    st.booleans(),
    st.sampled_from([16 * 1024 * 1024, 10, 126, 70000]),
)
def test_the_c_scan_parses_as_the_python_loop_does(specs, cuts, budget, require_mask, max_size):
    data = b"".join(frame(spec) for spec in specs)
    with_c = events_of(data, cuts, budget, require_mask, max_size)
    with python_scan_only():
        pure = events_of(data, cuts, budget, require_mask, max_size)
    assert with_c == pure


def numbered_state(buffer) -> tuple:
    names = ("first_seq", "bytes", "sent_seq", "acked_seq", "carried_seq", "received_seq", "close_seq")
    return tuple(getattr(buffer, name) for name in names) + (list(buffer.entries), dict(buffer.keyed))


def test_the_numbered_buffer_pushes_as_the_python_one_does():
    fast, slow = speedups.NumberedBuffer(10), session._NumberedBufferPython(10)
    assert numbered_state(fast) == numbered_state(slow)
    for buffer in (fast, slow):
        buffer.keyed["k"] = 1
        results = [buffer.push_plain(m) for m in ("abc", b"defg", "", "xyz", "!")]
        assert results == [True, True, True, True, False]  # the fifth would make 11 bytes
    assert numbered_state(fast) == numbered_state(slow)
    assert fast.sent_seq == 4 and fast.bytes == 10 and fast.keyed == {}
    fast.bytes -= 7
    assert fast.push_plain("!") and fast.bytes == 4
    for buffer in (fast, slow):  # exactly str or bytes: Session.send converts the rest first
        for other in (bytearray(b"x"), memoryview(b"x"), 3, type("Text", (str,), {})("x")):
            with pytest.raises(TypeError, match="push_plain takes str or bytes"):
                buffer.push_plain(other)
    assert fast.sent_seq == 5 and slow.sent_seq == 4


def test_the_numbered_buffer_acknowledges_as_the_python_one_does():
    fast, slow = speedups.NumberedBuffer(0), session._NumberedBufferPython(0)
    for buffer in (fast, slow):
        for message in ("abc", b"defg", "", "xyz", "\u00e9t\u00e9", b"!"):
            buffer.push_plain(message)
    results = {}
    for buffer in (fast, slow):
        results[buffer is fast] = [buffer.acknowledge(ack) for ack in (0, 2, 1, 2, 3, 6)]
        assert results[buffer is fast] == [False] * 6
    assert numbered_state(fast) == numbered_state(slow)
    assert fast.first_seq == 7 and fast.bytes == 0 and fast.entries == [] and fast.carried_seq == 6
    for buffer in (fast, slow):  # a close as the last entry counts no bytes; its ack confirms it
        buffer.push_plain("four")
        buffer.entries.append(session.Close(1000, "bye"))
        buffer.sent_seq += 1
        buffer.close_seq = buffer.sent_seq
        assert buffer.acknowledge(7) is False and buffer.bytes == 0
        assert buffer.acknowledge(8) is True and buffer.entries == []
        with pytest.raises(ProtocolError, match="ack 9 for a message never sent"):
            buffer.acknowledge(9)
    assert numbered_state(fast) == numbered_state(slow)


class _Session:
    """What deliver needs of a session: a state, a handler's failures; records what it saw."""

    def __init__(self) -> None:
        self.state = "open"
        self.seen: list = []

    def _callback_failed(self, where: str) -> None:
        self.seen.append(("failed", where, repr(sys.exc_info()[1])))
        if "close" in str(sys.exc_info()[1]):
            self.state = "closed"


def _handle(conn: _Session, message) -> None:
    conn.seen.append(message)
    if message in ("boom", "boom, close"):
        raise ValueError(message)


DELIVER_EVENTS = [
    (1, "abc"),
    (2, b"!a1"),
    (1, "!!escaped"),
    (1, "!"),
    (1, ""),
    (1, "!a2"),
    (1, "boom"),
    (9, b"ping"),
    (1, "!!"),
    (1, "\u00e9!"),
    (1, "boom, close"),
    (1, "after the close"),
    (8, (1000, "")),
    (-1, None),
]


def test_the_numbered_buffer_delivers_as_the_python_one_does():
    runs = []
    for buffer in (speedups.NumberedBuffer(0), session._NumberedBufferPython(0)):
        conn = _Session()
        stops, index = [], 0
        while index < len(DELIVER_EVENTS):
            index = buffer.deliver(DELIVER_EVENTS, index, conn, _handle, "open")
            stops.append(index)
            index += 1
        runs.append((stops, buffer.received_seq, conn.seen, conn.state))
    assert runs[0] == runs[1]
    stops, received, seen, _ = runs[0]
    assert stops == [3, 5, 7, 12, 13]  # "!", "!a2", the ping, the close, the error
    assert received == 9 and seen[:3] == ["abc", b"!a1", "!escaped"] and "after the close" not in seen
    assert ("failed", "on_message", "ValueError('boom')") in seen
    assert speedups.NumberedBuffer(0).deliver([], 0, _Session(), _handle, "open") == 0


def test_deliver_lets_a_base_exception_through():
    for buffer in (speedups.NumberedBuffer(0), session._NumberedBufferPython(0)):

        def stop(conn, message):
            raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            buffer.deliver([(1, "x"), (1, "y")], 0, _Session(), stop, "open")
        assert buffer.received_seq == 1


def test_session_state_is_a_numbered_buffer_with_its_own_slots():
    state = session.SessionState(max_bytes=5)
    assert isinstance(state, speedups.NumberedBuffer)
    assert state.max_bytes == 5 and state.close_message is None
    state.push("hello")
    assert state.push_close(1000, "bye") == 2 and state.close_message == session.Close(1000, "bye")
