"""RFC 6455 codec: frames split at every offset, glued, fragmented, and every protocol check."""

import os
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wsdaemon.proto import rfc6455
from wsdaemon.proto.errors import HandshakeError
from wsdaemon.proto.http11 import Headers, parse_request_head
from wsdaemon.proto.masking import _apply_mask_python, apply_mask
from wsdaemon.proto.rfc6455 import (
    EV_ERROR,
    OP_BINARY,
    OP_CLOSE,
    OP_CONT,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    FrameParser,
    encode_close,
    encode_frame,
)

MASK = b"\x37\xfa\x21\x3d"


def client_frame(opcode, payload=b"", fin=True, rsv=0, mask=MASK):
    frame = bytearray(encode_frame(opcode, payload, fin=fin, mask=mask))
    frame[0] |= rsv << 4
    return bytes(frame)


def parse_all(data: bytes, chunks=None, **kwargs):
    parser = FrameParser(**kwargs)
    events = []
    if chunks is None:
        events += parser.feed(data)
    else:
        pos = 0
        for size in chunks:
            events += parser.feed(data[pos : pos + size])
            pos += size
        events += parser.feed(data[pos:])
    return events


def normalise(events):
    return [(k, (v.code, str(v)) if k == EV_ERROR else v) for k, v in events]


def assert_same_at_every_split(data: bytes, expected, **kwargs):
    assert normalise(parse_all(data, **kwargs)) == normalise(expected)
    for split in range(1, len(data)):
        got = parse_all(data, chunks=[split], **kwargs)
        assert normalise(got) == normalise(expected), f"split at {split}"
    got = []
    parser = FrameParser(**kwargs)
    for i in range(len(data)):
        got += parser.feed(data[i : i + 1])
    assert normalise(got) == normalise(expected), "byte by byte"


# --- handshake -------------------------------------------------------------


def test_accept_key_rfc_example():
    assert rfc6455.accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


HANDSHAKE = (
    b"GET /chat HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: WebSocket\r\n"
    b"Connection: keep-alive, Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: chat, superchat\r\n"
)


def test_valid_handshake_and_response():
    request = parse_request_head(HANDSHAKE.rstrip(b"\r\n"))
    assert rfc6455.validate_handshake(request) == "dGhlIHNhbXBsZSBub25jZQ=="
    assert rfc6455.offered_subprotocols(request) == ["chat", "superchat"]
    response = rfc6455.accept_response("dGhlIHNhbXBsZSBub25jZQ==", "chat")
    assert response == (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nSec-WebSocket-Protocol: chat\r\n\r\n"
    )


@pytest.mark.parametrize(
    "change,status",
    [
        ((b"GET /chat", b"POST /chat"), 405),
        ((b"HTTP/1.1", b"HTTP/1.0"), 400),
        ((b"Host: server.example.com\r\n", b""), 400),
        ((b"Upgrade: WebSocket", b"Upgrade: h2c"), 400),
        ((b"keep-alive, Upgrade", b"keep-alive"), 400),
        ((b"Version: 13", b"Version: 12"), 426),
        ((b"dGhlIHNhbXBsZSBub25jZQ==", b"dGhlIHNhbXBsZQ=="), 400),
        ((b"dGhlIHNhbXBsZSBub25jZQ==", b"not base64!!"), 400),
    ],
)
def test_invalid_handshakes(change, status):
    request = parse_request_head(HANDSHAKE.replace(*change).rstrip(b"\r\n"))
    with pytest.raises(HandshakeError) as err:
        rfc6455.validate_handshake(request)
    assert err.value.status == status
    if status == 426:
        assert ("Sec-WebSocket-Version", "13") in err.value.headers


def test_subprotocol_offer_keeps_only_tokens():
    request = parse_request_head(HANDSHAKE.replace(b"chat, superchat", b"x/y, good, a b").rstrip(b"\r\n"))
    assert rfc6455.offered_subprotocols(request) == ["good"]
    # The HTTP parser refuses control characters before this point; the filter holds on its own too.
    request.headers = Headers([("Sec-WebSocket-Protocol", "chat\x01x, good")])
    assert rfc6455.offered_subprotocols(request) == ["good"]


# --- masking ---------------------------------------------------------------


@pytest.mark.parametrize("n", [0, 1, 3, 4, 5, 125, 126, 1000, 65537])
def test_mask_roundtrip_and_matches_reference(n):
    data = os.urandom(n)
    reference = bytes(b ^ MASK[i % 4] for i, b in enumerate(data))
    assert apply_mask(data, MASK) == reference
    assert _apply_mask_python(data, MASK) == reference
    assert apply_mask(reference, MASK) == data


# --- frames ----------------------------------------------------------------


def test_encode_lengths():
    assert encode_frame(OP_TEXT, b"a") == b"\x81\x01a"
    assert encode_frame(OP_BINARY, b"a" * 126)[:4] == b"\x82\x7e\x00\x7e"
    assert encode_frame(OP_BINARY, b"a" * 65536)[:10] == b"\x82\x7f" + struct.pack("!Q", 65536)
    assert encode_frame(OP_TEXT, b"ab", fin=False) == b"\x01\x02ab"


def test_encode_close_truncates_at_a_character_boundary():
    frame = encode_close(1000, "é" * 100)
    payload = frame[2:]
    assert len(payload) <= 125
    payload[2:].decode("utf-8")
    assert encode_close(None) == b"\x88\x00"


def test_glued_frames_with_interleaved_control_split_everywhere():
    data = (
        client_frame(OP_TEXT, "Hé".encode())
        + client_frame(OP_TEXT, b"frag", fin=False)
        + client_frame(OP_PING, b"p1")
        + client_frame(OP_CONT, "mént".encode()[:2], fin=False)
        + client_frame(OP_PONG, b"")
        + client_frame(OP_CONT, "mént".encode()[2:], fin=True)
        + client_frame(OP_BINARY, b"\x00\xff" * 100)
        + client_frame(OP_BINARY, b"a", fin=False)
        + client_frame(OP_CONT, b"b" * 70000)
        + client_frame(OP_CLOSE, struct.pack("!H", 1000) + b"bye")
    )
    expected = [
        (OP_TEXT, "Hé"),
        (OP_PING, b"p1"),
        (OP_PONG, b""),
        (OP_TEXT, "fragmént"),
        (OP_BINARY, b"\x00\xff" * 100),
        (OP_BINARY, b"a" + b"b" * 70000),
        (OP_CLOSE, (1000, "bye")),
    ]
    assert normalise(parse_all(data)) == normalise(expected)
    for split in list(range(1, 60)) + list(range(len(data) - 40, len(data))):
        assert normalise(parse_all(data, chunks=[split])) == normalise(expected)


def test_every_offset_for_small_stream():
    data = (
        client_frame(OP_TEXT, "añb".encode(), fin=False)
        + client_frame(OP_PING, b"x")
        + client_frame(OP_CONT, b"c")
        + client_frame(OP_BINARY, b"\x01" * 130)
    )
    assert_same_at_every_split(data, [(OP_PING, b"x"), (OP_TEXT, "añbc"), (OP_BINARY, b"\x01" * 130)])


def test_nothing_after_close_is_parsed():
    parser = FrameParser()
    events = parser.feed(client_frame(OP_CLOSE, b"") + client_frame(OP_TEXT, b"late"))
    assert events == [(OP_CLOSE, (1005, ""))]
    assert parser.feed(client_frame(OP_TEXT, b"later")) == []


def error_of(data: bytes, **kwargs):
    events = parse_all(data, **kwargs)
    assert events and events[-1][0] == EV_ERROR, events
    return events[-1][1]


@pytest.mark.parametrize(
    "data,code",
    [
        (client_frame(OP_TEXT, b"x", rsv=4), 1002),
        (client_frame(OP_TEXT, b"x", rsv=1), 1002),
        (client_frame(3, b""), 1002),
        (client_frame(0xB, b""), 1002),
        (client_frame(OP_PING, b"x" * 126), 1002),
        (client_frame(OP_PING, b"x", fin=False), 1002),
        (client_frame(OP_CONT, b"x"), 1002),
        (client_frame(OP_TEXT, b"a", fin=False) + client_frame(OP_TEXT, b"b"), 1002),
        (encode_frame(OP_TEXT, b"unmasked"), 1002),
        (b"\x82\xff" + struct.pack("!Q", 1 << 63) + MASK, 1002),
        (client_frame(OP_TEXT, b"\xff"), 1007),
        (client_frame(OP_TEXT, b"\xce", fin=False) + client_frame(OP_CONT, b"\x41"), 1007),
        (client_frame(OP_CLOSE, b"\x03"), 1002),
        (client_frame(OP_CLOSE, struct.pack("!H", 1005)), 1002),
        (client_frame(OP_CLOSE, struct.pack("!H", 999)), 1002),
        (client_frame(OP_CLOSE, struct.pack("!H", 2000)), 1002),
        (client_frame(OP_CLOSE, struct.pack("!H", 1000) + b"\xff"), 1007),
    ],
)
def test_protocol_errors(data, code):
    assert error_of(data).code == code


@pytest.mark.parametrize("code", [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 4999])
def test_valid_close_codes(code):
    assert parse_all(client_frame(OP_CLOSE, struct.pack("!H", code))) == [(OP_CLOSE, (code, ""))]


@pytest.mark.parametrize("code", [0, 999, 1004, 1005, 1006, 1012, 1015, 1016, 2999, 5000, 65535])
def test_invalid_close_codes(code):
    assert error_of(client_frame(OP_CLOSE, struct.pack("!H", code))).code == 1002


def test_events_before_an_error_are_kept_in_order():
    data = client_frame(OP_TEXT, b"one") + client_frame(OP_TEXT, b"x", rsv=2) + client_frame(OP_TEXT, b"two")
    events = parse_all(data)
    assert events[0] == (OP_TEXT, "one")
    assert events[1][0] == EV_ERROR
    assert len(events) == 2


def test_message_size_limit_fails_on_the_header_before_the_payload_arrives():
    parser = FrameParser(max_message_size=1000)
    header = client_frame(OP_BINARY, b"x" * 2000)[:8]
    events = parser.feed(header)
    assert events[-1][0] == EV_ERROR and events[-1][1].code == 1009


def test_message_size_limit_counts_fragments_together():
    data = client_frame(OP_BINARY, b"x" * 600, fin=False) + client_frame(OP_CONT, b"y" * 600)
    assert error_of(data, max_message_size=1000).code == 1009
    assert parse_all(data, max_message_size=1200) == [(OP_BINARY, b"x" * 600 + b"y" * 600)]


def test_invalid_utf8_fails_while_the_frame_is_still_arriving():
    payload = b"valid text " * 10 + b"\xed\xa0\x80" + b"more" * 100
    frame = client_frame(OP_TEXT, payload)
    parser = FrameParser()
    cut = 6 + 110 + 3 + 10  # header + valid text + the surrogate + a little more
    events = parser.feed(frame[:cut])
    assert events and events[-1][0] == EV_ERROR and events[-1][1].code == 1007


def test_incomplete_utf8_sequence_across_fragments_is_fine():
    snowman = "☃".encode()
    data = client_frame(OP_TEXT, snowman[:1], fin=False) + client_frame(OP_CONT, snowman[1:])
    assert_same_at_every_split(data, [(OP_TEXT, "☃")])


def test_partial_validation_continues_a_fragmented_message_state():
    snowman = "☃".encode()
    # first fragment ends mid-character; the second arrives in pieces
    data = client_frame(OP_TEXT, b"a" + snowman[:2], fin=False) + client_frame(
        OP_CONT, snowman[2:] + b"z" * 50
    )
    assert_same_at_every_split(data, [(OP_TEXT, "a☃" + "z" * 50)])


# --- property: random frames round-trip ------------------------------------


message = st.one_of(
    st.tuples(st.just(OP_TEXT), st.text(max_size=300)),
    st.tuples(st.just(OP_BINARY), st.binary(max_size=70000)),
    st.tuples(st.just(OP_PING), st.binary(max_size=125)),
    st.tuples(st.just(OP_PONG), st.binary(max_size=125)),
)


def message_stream(messages, mask: bytes) -> bytes:
    """Client frames of ``(message, pieces)``: each data message in that many fragments."""
    stream = b""
    for (opcode, value), pieces in messages:
        raw = value.encode() if opcode == OP_TEXT else value
        if opcode in (OP_TEXT, OP_BINARY) and pieces > 1 and raw:
            size = max(1, len(raw) // pieces)
            parts = [raw[i : i + size] for i in range(0, len(raw), size)]
            for i, part in enumerate(parts):
                stream += encode_frame(
                    opcode if i == 0 else OP_CONT, part, fin=i == len(parts) - 1, mask=mask
                )
        else:
            stream += encode_frame(opcode, raw, mask=mask)
    return stream


@settings(max_examples=150, deadline=None)
@given(
    messages=st.lists(st.tuples(message, st.integers(1, 4)), max_size=8),
    chunk=st.integers(1, 5000),
    mask=st.binary(min_size=4, max_size=4),
)
def test_random_messages_roundtrip(messages, chunk, mask):
    stream = message_stream(messages, mask)
    expected = [(opcode, value) for (opcode, value), _ in messages]
    chunks = [chunk] * (len(stream) // chunk)
    assert parse_all(stream, chunks=chunks) == expected


@pytest.mark.parametrize("chunk", [1, 4093, 65536, 262144, 1 << 21])
def test_large_frames_collected_in_pieces_then_small_ones(chunk):
    big = os.urandom(1 << 20)
    data = (
        client_frame(OP_BINARY, big) + client_frame(OP_TEXT, b"after") + client_frame(OP_BINARY, big[:70000])
    )
    parser = FrameParser()
    events = []
    step = chunk if chunk > 1 else 997
    for pos in range(0, len(data), step):
        events += parser.feed(data[pos : pos + step])
        assert parser.buffered <= len(data)
    assert events == [(OP_BINARY, big), (OP_TEXT, "after"), (OP_BINARY, big[:70000])]
    assert parser.buffered == 0


def test_large_fragmented_binary_message_in_pieces():
    part = os.urandom(100000)
    data = (
        client_frame(OP_BINARY, part, fin=False) + client_frame(OP_PING, b"mid") + client_frame(OP_CONT, part)
    )
    for split in (5, 100005, 100011, len(data) - 3):
        assert parse_all(data, chunks=[split, 50000]) == [(OP_PING, b"mid"), (OP_BINARY, part + part)]


# --- the read budget ---------------------------------------------------------


def parse_with_budget(data: bytes, budget: int, chunk: int) -> tuple[list, int]:
    """Feed ``data`` in ``chunk``-sized reads as the connection does: while the parser has a
    backlog it gets ``feed(b"")`` (the next turn's slice) instead of the next read."""
    parser = FrameParser()
    parser.budget = budget
    events, turns, pos = [], 0, 0
    while pos < len(data) or parser.backlog:
        turns += 1
        assert turns < 100_000
        if parser.backlog:
            events += parser.feed(b"")
        else:
            events += parser.feed(data[pos : pos + chunk])
            pos += chunk
        assert parser.buffered <= chunk + 1024  # never more than one read (plus a partial frame) kept
    return events, turns


def test_budget_parses_frames_starting_within_it_and_keeps_the_rest():
    frames = b"".join(client_frame(OP_TEXT, b"a") for _ in range(100))  # 7 bytes each
    parser = FrameParser()
    parser.budget = 70
    first = parser.feed(frames)
    assert len(first) == 10 and parser.backlog  # frames starting at 0, 7, ... 63
    assert parser.buffered == 700 - 70
    rest = []
    while parser.backlog:
        rest += parser.feed(b"")
    assert len(first) + len(rest) == 100 and parser.buffered == 0


def test_budget_ends_a_large_frame_it_started():
    big = os.urandom(300_000)
    data = client_frame(OP_BINARY, big) + client_frame(OP_TEXT, b"next")
    events, _ = parse_with_budget(data, budget=1024, chunk=1 << 20)
    assert events == [(OP_BINARY, big), (OP_TEXT, "next")]


def test_bytes_fed_while_backlogged_are_kept_in_order():
    parser = FrameParser()
    parser.budget = 20
    a = b"".join(client_frame(OP_TEXT, str(i).encode()) for i in range(10))
    b = b"".join(client_frame(OP_TEXT, str(i).encode()) for i in range(10, 20))
    events = parser.feed(a)
    assert parser.backlog
    events += parser.feed(b)  # (a TLS read, say): appended after what is left of a
    while parser.backlog:
        events += parser.feed(b"")
    assert [v for _, v in events] == [str(i) for i in range(20)]


@settings(max_examples=100, deadline=None)
@given(
    messages=st.lists(st.tuples(message, st.integers(1, 4)), max_size=12),
    budget=st.integers(1, 4096),
    chunk=st.integers(1, 9000),
)
def test_budget_gives_the_same_events_as_no_budget(messages, budget, chunk):
    stream = message_stream(messages, MASK)
    events, _ = parse_with_budget(stream, budget, chunk)
    assert normalise(events) == normalise(parse_all(stream))
