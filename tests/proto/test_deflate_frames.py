"""RFC 6455 frames with permessage-deflate (RFC 7692 §6, §7.2.3): RSV1 rules, inflating, limits."""

from __future__ import annotations

import os
import zlib

import pytest

from wsdaemon.proto.codes import CloseCode
from wsdaemon.proto.deflate_frames import DeflateFrameParser, encode_compressed_frame
from wsdaemon.proto.permessage_deflate import DeflateParams, PerMessageDeflate
from wsdaemon.proto.rfc6455 import (
    EV_ERROR,
    OP_BINARY,
    OP_CONT,
    OP_PING,
    OP_TEXT,
    FrameParser,
    encode_frame,
)

MASK = b"\x37\xfa\x21\x3d"
RSV1 = 0x40
HELLO = bytes.fromhex("f2 48 cd c9 c9 07 00")


def frame(opcode: int, payload: bytes, fin: bool = True, rsv: int = 0) -> bytes:
    """A masked client frame; ``rsv`` is OR-ed into the first byte."""
    data = bytearray(encode_frame(opcode, payload, fin=fin, mask=MASK))
    data[0] |= rsv
    return bytes(data)


def deflated(data: bytes, wbits: int = 15) -> bytes:
    c = zlib.compressobj(6, zlib.DEFLATED, -wbits)
    return (c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH))[:-4]


def parser(max_message_size: int = 1 << 20, **params) -> DeflateFrameParser:
    codec = PerMessageDeflate(DeflateParams(**params), max_message_size=max_message_size)
    return DeflateFrameParser(codec, max_message_size)


def error_of(events) -> tuple[int, str]:
    assert events and events[-1][0] == EV_ERROR, events
    return events[-1][1].code, events[-1][1].reason


# --- RFC 7692 §7.2.3 examples, as frames -------------------------------------


def test_7_2_3_1_hello_in_one_compressed_frame():
    # The RFC's frame, unmasked: c1 07 f2 48 cd c9 c9 07 00
    assert encode_compressed_frame(OP_TEXT, HELLO) == bytes.fromhex("c1 07 f2 48 cd c9 c9 07 00")
    assert parser().feed(frame(OP_TEXT, HELLO, rsv=RSV1)) == [(OP_TEXT, "Hello")]


def test_7_2_3_1_hello_in_two_fragments_rsv1_on_the_first_only():
    # 41 03 f2 48 cd / 80 04 c9 c9 07 00
    data = frame(OP_TEXT, HELLO[:3], fin=False, rsv=RSV1) + frame(OP_CONT, HELLO[3:])
    assert parser().feed(data) == [(OP_TEXT, "Hello")]


def test_7_2_3_2_second_message_refers_to_the_first():
    p = parser()
    data = frame(OP_TEXT, HELLO, rsv=RSV1) + frame(OP_TEXT, bytes.fromhex("f2 00 11 00 00"), rsv=RSV1)
    assert p.feed(data) == [(OP_TEXT, "Hello"), (OP_TEXT, "Hello")]


def test_7_2_3_3_stored_block_and_7_2_3_4_bfinal():
    stored = bytes.fromhex("00 05 00 fa ff 48 65 6c 6c 6f 00")
    bfinal = bytes.fromhex("f3 48 cd c9 c9 07 00 00")
    assert parser().feed(frame(OP_TEXT, stored, rsv=RSV1) + frame(OP_TEXT, bfinal, rsv=RSV1)) == [
        (OP_TEXT, "Hello"),
        (OP_TEXT, "Hello"),
    ]


def test_7_2_3_6_empty_compressed_message():
    assert parser().feed(frame(OP_BINARY, b"\x00", rsv=RSV1)) == [(OP_BINARY, b"")]
    assert parser().feed(frame(OP_TEXT, b"", rsv=RSV1)) == [(OP_TEXT, "")]


# --- RSV1 rules (§6) ---------------------------------------------------------


def test_uncompressed_messages_inside_a_compressed_session():
    p = parser()
    data = (
        frame(OP_TEXT, b"plain") + frame(OP_BINARY, deflated(b"\x01" * 500), rsv=RSV1) + frame(OP_TEXT, b"x")
    )
    assert p.feed(data) == [(OP_TEXT, "plain"), (OP_BINARY, b"\x01" * 500), (OP_TEXT, "x")]


def test_rsv1_on_a_continuation_frame_is_1002():
    data = frame(OP_TEXT, HELLO[:3], fin=False, rsv=RSV1) + frame(OP_CONT, HELLO[3:], rsv=RSV1)
    assert error_of(parser().feed(data)) == (CloseCode.PROTOCOL_ERROR, "RSV1 set on a continuation frame")


@pytest.mark.parametrize("opcode", [0x8, 0x9, 0xA])
def test_rsv1_on_a_control_frame_is_1002(opcode):
    payload = b"\x03\xe8" if opcode == 0x8 else b"ping"
    assert error_of(parser().feed(frame(opcode, payload, rsv=RSV1))) == (
        CloseCode.PROTOCOL_ERROR,
        "RSV1 set on a control frame",
    )


@pytest.mark.parametrize("rsv", [0x20, 0x10, 0x60, 0x70])
def test_rsv2_and_rsv3_stay_errors(rsv):
    code, _ = error_of(parser().feed(frame(OP_TEXT, HELLO, rsv=rsv)))
    assert code == CloseCode.PROTOCOL_ERROR


def test_without_negotiation_rsv1_is_1002_as_before():
    code, reason = error_of(FrameParser().feed(frame(OP_TEXT, HELLO, rsv=RSV1)))
    assert (code, reason) == (CloseCode.PROTOCOL_ERROR, "reserved bits set without a negotiated extension")


def test_reserved_opcodes_stay_errors_with_deflate():
    for opcode in (3, 4, 7, 0xB):
        code, _ = error_of(parser().feed(frame(opcode, b"x")))
        assert code == CloseCode.PROTOCOL_ERROR
        code, _ = error_of(parser().feed(frame(opcode, b"x", rsv=RSV1)))
        assert code == CloseCode.PROTOCOL_ERROR


def test_ping_between_fragments_of_a_compressed_message():
    data = (
        frame(OP_BINARY, HELLO[:2], fin=False, rsv=RSV1)
        + frame(OP_PING, b"p")
        + frame(OP_CONT, HELLO[2:5], fin=False)
        + frame(OP_CONT, HELLO[5:])
    )
    assert parser().feed(data) == [(OP_PING, b"p"), (OP_BINARY, b"Hello")]


def test_new_message_inside_a_compressed_fragmented_one_is_1002():
    data = frame(OP_TEXT, HELLO[:3], fin=False, rsv=RSV1) + frame(OP_TEXT, HELLO, rsv=RSV1)
    code, reason = error_of(parser().feed(data))
    assert (code, reason) == (CloseCode.PROTOCOL_ERROR, "new data frame inside a fragmented message")


# --- inflating: limits, bad data, UTF-8 ---------------------------------------


def test_inflated_size_limit_is_1009():
    bomb = deflated(b"\x00" * (4 << 20))  # 4 MiB of zeros: about 4 KiB on the wire
    assert len(bomb) < 8192
    code, _ = error_of(parser(max_message_size=1 << 20).feed(frame(OP_BINARY, bomb, rsv=RSV1)))
    assert code == CloseCode.MESSAGE_TOO_BIG


def test_message_at_the_limit_passes():
    payload = os.urandom(1000) * 10
    p = parser(max_message_size=len(payload))
    assert p.feed(frame(OP_BINARY, deflated(payload), rsv=RSV1)) == [(OP_BINARY, payload)]


def test_bad_deflate_data_is_1007():
    code, _ = error_of(parser().feed(frame(OP_BINARY, b"\xff\xff\xff\xff", rsv=RSV1)))
    assert code == CloseCode.INVALID_DATA


def test_invalid_utf8_after_inflating_is_1007():
    code, reason = error_of(parser().feed(frame(OP_TEXT, deflated(b"ok \xc3\x28 no"), rsv=RSV1)))
    assert (code, reason) == (CloseCode.INVALID_DATA, "invalid UTF-8 in text message")


def test_text_split_inside_a_character_across_compressed_fragments():
    text = "привет ✓ 🎮" * 20
    data = deflated(text.encode())
    cut = len(data) // 2
    frames = frame(OP_TEXT, data[:cut], fin=False, rsv=RSV1) + frame(OP_CONT, data[cut:])
    assert parser().feed(frames) == [(OP_TEXT, text)]


def test_large_compressed_frame_arriving_in_pieces():
    payload = os.urandom(300_000)  # incompressible: a compressed frame over 64 KiB
    data = frame(OP_BINARY, deflated(payload), rsv=RSV1)
    p = parser()
    events = []
    for i in range(0, len(data), 7000):
        events += p.feed(data[i : i + 7000])
    assert events == [(OP_BINARY, payload)]


def test_compressed_text_still_arriving_is_not_checked_as_utf8():
    # a plain parser checks partial text frames for UTF-8; compressed bytes are not text
    text = "".join(chr(0x400 + b) for b in os.urandom(5000))
    compressed = deflated(text.encode())
    assert error_of(FrameParser().feed(frame(OP_TEXT, compressed)[:-10]))[0] == CloseCode.INVALID_DATA
    data = frame(OP_TEXT, compressed, rsv=RSV1)
    p = parser()
    assert p.feed(data[:-10]) == []
    assert p.feed(data[-10:]) == [(OP_TEXT, text)]


def test_context_reset_when_the_client_agreed_to_it():
    p = parser(client_no_context_takeover=True)
    assert p.feed(frame(OP_TEXT, HELLO, rsv=RSV1)) == [(OP_TEXT, "Hello")]
    assert p.deflate.zlib_memory == 0
    code, _ = error_of(p.feed(frame(OP_TEXT, bytes.fromhex("f2 00 11 00 00"), rsv=RSV1)))
    assert code == CloseCode.INVALID_DATA


# --- outbound ----------------------------------------------------------------


def test_encode_compressed_frame_sets_rsv1_and_lengths():
    for n in (0, 125, 126, 65535, 65536):
        data = os.urandom(n)
        out = encode_compressed_frame(OP_BINARY, data)
        plain = encode_frame(OP_BINARY, data)
        assert out[0] == plain[0] | RSV1 and out[1:] == plain[1:]


def test_our_frames_parse_back():
    codec = PerMessageDeflate(DeflateParams(server_max_window_bits=12))
    messages = [b"a" * 100, b'{"x": 1}' * 30, b""]
    wire = b"".join(encode_compressed_frame(OP_BINARY, codec.compress(m)) for m in messages)
    receiver = DeflateFrameParser(PerMessageDeflate(DeflateParams(client_max_window_bits=12)))
    receiver.require_mask = False
    assert receiver.feed(wire) == [(OP_BINARY, m) for m in messages]
