"""The C accelerator gives exactly what the Python code gives: frames built, frames parsed."""

import os
import sys
from contextlib import contextmanager

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wsdaemon.proto import http11, masking, rfc6455, session
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


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.binary(max_size=300), min_size=1, max_size=6),
    st.integers(min_value=0, max_value=2000),
    st.integers(min_value=0, max_value=2000),
    st.sampled_from([MASK, b"\x00\x00\x00\x00", None]),
)
def test_join_unmask_gives_what_a_join_and_an_unmask_give(parts, a, b, mask):
    total = sum(map(len, parts))
    start, end = sorted((a % (total + 1), b % (total + 1)))
    assert speedups.join_unmask(parts, start, end, mask) == masking._join_unmask_python(
        parts, start, end, mask
    )


def test_join_unmask_refuses_what_is_out_of_range():
    for args in (
        ([b"ab"], 0, 3, None),
        ([b"ab"], 2, 1, None),
        ([b"ab"], 0, 1, b"abc"),
        ([bytearray(b"a")], 0, 1, None),
    ):
        try:
            speedups.join_unmask(*args)
        except (ValueError, TypeError):
            continue
        raise AssertionError(f"join_unmask{args} did not refuse")


_HEAD = (
    b"GET /chat?x=1 HTTP/1.1\r\nHost: example.com:80\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nX-A: \t a:b \t\r\nHOST: two\r\nE:"
)


def _both_splits(head: bytes, names_max: int, max_headers: int) -> tuple:
    py_names: dict = {"Host": "Host"}
    c_names, lowers = dict(py_names), {}
    py = http11._split_head(head, py_names, {}, names_max, max_headers)
    c = speedups.parse_head(head, c_names, lowers, names_max, max_headers)
    assert all(lower == name.lower() for name, lower in lowers.items())
    return py, c, py_names, c_names


def test_head_split_matches_the_python_parse():
    py, c, py_names, c_names = _both_splits(_HEAD, 512, 100)
    assert py is not None and py == c and py_names == c_names
    assert (
        _both_splits(_HEAD, 3, 100)[2:]
        == ({"Host": "Host", "Upgrade": "Upgrade", "Connection": "Connection"},) * 2
    )
    assert _both_splits(_HEAD, 512, 6)[:2] == (None, None)


@settings(max_examples=400, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, len(_HEAD)), st.sampled_from(b"\r\n:\t \x00\x7f\x80\xffAz09/.-~"), st.booleans()
        ),
        max_size=4,
    ),
    st.integers(1, 8),
)
def test_head_split_matches_the_python_parse_on_edited_heads(edits, names_max):
    head = bytearray(_HEAD)
    for pos, byte, insert in edits:
        if insert:
            head[pos:pos] = bytes((byte,))
        elif pos < len(head):
            head[pos] = byte
    py, c, py_names, c_names = _both_splits(bytes(head), names_max, 7)
    assert py == c and py_names == c_names


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["Host", "host", "User-Agent", "X-Other", "Upgrade"]), st.text(max_size=300)
        ),
        max_size=6,
    ),
    st.integers(0, 4),
)
def test_compacted_items_match_the_python_compaction(items, shared_max):
    lowers = {"Host": "host"}
    py_shared, c_shared = {"": "", "common": "common"}, {"": "", "common": "common"}
    py = http11._compact_python(items, lowers, http11._SHAREABLE, py_shared, shared_max)
    c = speedups.compact_items(items, lowers, http11._SHAREABLE, c_shared, shared_max)
    assert c == py and py_shared == c_shared
    assert [id(value) for _, value in c] == [id(value) for _, value in py]


@given(st.text(alphabet=st.characters(max_codepoint=127), max_size=300))
def test_the_accept_key_matches_the_python_one(key):
    assert speedups.accept_key(key) == rfc6455._accept_key_python(key)


def test_the_accept_key_is_the_rfc_example_and_refuses_what_python_refuses():
    assert speedups.accept_key("dGhlIHNhbXBsZSBub25jZQ==") == b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    for fn in (speedups.accept_key, rfc6455._accept_key_python):
        try:
            fn("é")
        except UnicodeEncodeError:
            continue
        raise AssertionError(f"{fn} took a non-ASCII key")


def test_a_nonblocking_accept_gives_what_socket_accept_gives():
    import fcntl
    import socket

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.setblocking(False)
        try:
            speedups.accept_nonblocking(listener)
        except BlockingIOError:
            pass
        else:
            raise AssertionError("accepted with nobody waiting")
        with socket.create_connection(listener.getsockname()) as client:
            fd, address = speedups.accept_nonblocking(listener)
            try:
                assert address == client.getsockname()
                assert fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_NONBLOCK
                assert fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC
            finally:
                os.close(fd)
