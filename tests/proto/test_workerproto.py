"""The worker protocol's framing: 4-byte big-endian length + JSON, cut anywhere, with a limit."""

import json
import struct

import pytest

from wsdaemon.proto.workerproto import (
    HEADER_SIZE,
    FrameDecoder,
    FrameError,
    FrameTooLarge,
    encode,
)

MESSAGES = [
    {"type": "hello", "version": 1, "token": "s3cret", "pid": 42, "tasks": ["a", "b"]},
    {"type": "task", "id": 1, "name": "find_path", "args": [[0, 1], [9, 9]], "kwargs": {"grid": "x"}},
    {"type": "result", "id": 1, "value": {"path": [[0, 1], [1, 1]], "note": "h\u00e9llo \u2603"}},
    {"type": "error", "id": 2, "error_type": "ValueError", "message": "", "traceback": "..."},
    {"type": "stop"},
]


def test_encode_is_length_prefixed_json():
    frame = encode({"type": "stop"})
    assert frame == struct.pack(">I", 15) + b'{"type":"stop"}'
    body = encode({"type": "x", "s": "\u2603"})[HEADER_SIZE:]
    assert json.loads(body.decode("utf-8")) == {"type": "x", "s": "\u2603"}
    assert "\u2603".encode() in body  # UTF-8, not \\u escapes


def test_round_trip_many_frames_in_one_chunk():
    stream = b"".join(encode(m) for m in MESSAGES)
    decoder = FrameDecoder()
    assert decoder.feed(stream) == MESSAGES
    assert decoder.buffered == 0


def test_split_at_every_offset():
    stream = b"".join(encode(m) for m in MESSAGES)
    for cut in range(len(stream) + 1):
        decoder = FrameDecoder()
        got = decoder.feed(stream[:cut]) + decoder.feed(stream[cut:])
        assert got == MESSAGES, cut
        assert decoder.buffered == 0


def test_byte_by_byte():
    stream = b"".join(encode(m) for m in MESSAGES)
    decoder = FrameDecoder()
    got = []
    for i in range(len(stream)):
        got += decoder.feed(stream[i : i + 1])
    assert got == MESSAGES


def test_encoder_rejects_what_json_cannot_carry():
    with pytest.raises(TypeError):
        encode({"type": "result", "value": {1, 2}})
    with pytest.raises(ValueError):
        encode({"type": "result", "value": float("nan")})


def test_encoder_size_limit():
    message = {"type": "task", "args": ["x" * 100]}
    size = len(encode(message)) - HEADER_SIZE
    assert encode(message, max_size=size)
    with pytest.raises(FrameTooLarge):
        encode(message, max_size=size - 1)


def test_decoder_refuses_oversized_frame_from_its_header_alone():
    decoder = FrameDecoder(max_size=100)
    assert decoder.feed(struct.pack(">I", 100)[:3]) == []
    with pytest.raises(FrameTooLarge):
        decoder.feed(struct.pack(">I", 101)[3:])  # header completes: 0x00000065 > 100
    decoder = FrameDecoder(max_size=100)
    with pytest.raises(FrameTooLarge):
        decoder.feed(struct.pack(">I", 2**32 - 1))


def test_frame_at_the_limit_is_accepted():
    body = json.dumps({"type": "t", "pad": "x" * 50}).encode()
    decoder = FrameDecoder(max_size=len(body))
    assert decoder.feed(struct.pack(">I", len(body)) + body) == [json.loads(body)]


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b"[1, 2]",
        b'"type"',
        b'{"type": 3}',
        b'{"no_type": 1}',
        b'{"type": "x"',
        b'{"type": "\xff"}',
    ],
)
def test_bad_frames(body):
    decoder = FrameDecoder()
    with pytest.raises(FrameError):
        decoder.feed(struct.pack(">I", len(body)) + body)


def test_good_frame_before_a_bad_one_is_still_read_by_a_fresh_feed():
    decoder = FrameDecoder()
    assert decoder.feed(encode({"type": "a"})) == [{"type": "a"}]
    with pytest.raises(FrameError):
        decoder.feed(struct.pack(">I", 3) + b"nop")
