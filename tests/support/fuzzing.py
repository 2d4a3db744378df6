"""Inputs for fuzz tests: valid samples of each wire format, and ways to break them."""

from __future__ import annotations

import os
import random

from hypothesis import strategies as st

from wsdaemon.proto.rfc6455 import OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_PONG, OP_TEXT, encode_frame

MASK = b"\x11\x22\x33\x44"

HTTP_SAMPLES = [
    b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET /chat?x=1&y=%20 HTTP/1.1\r\nHost: example.com:8080\r\nUpgrade: websocket\r\n"
    b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Sec-WebSocket-Version: 13\r\nOrigin: http://example.com\r\nSec-WebSocket-Protocol: a, b\r\n"
    b'Cookie: session=abc; x="y"\r\n\r\n',
    b"GET /demo HTTP/1.1\r\nHost: example.com\r\nConnection: Upgrade\r\nUpgrade: WebSocket\r\n"
    b"Sec-WebSocket-Key1: 4 @1  46546xW%0l 1 5\r\nSec-WebSocket-Key2: 12998 5 Y3 1  .P00\r\n"
    b"Origin: http://example.com\r\n\r\n^n:ds[4U",
    b"GET /demo HTTP/1.1\r\nUpgrade: WebSocket\r\nConnection: Upgrade\r\nHost: example.com\r\n"
    b"Origin: http://example.com\r\n\r\n",
    b"POST /lp/send?s=1 HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
    b"GET http://example.com/abs?q HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    b"HEAD /status HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
]


def _frames() -> list[bytes]:
    return [
        encode_frame(OP_TEXT, "héllo".encode(), mask=MASK),
        encode_frame(OP_BINARY, bytes(range(200)), mask=MASK),
        encode_frame(OP_TEXT, b"frag", fin=False, mask=MASK)
        + encode_frame(OP_PING, b"p", mask=MASK)
        + encode_frame(OP_CONT, b"ment", mask=MASK),
        encode_frame(OP_BINARY, b"x" * 70000, mask=MASK),
        encode_frame(OP_PONG, b"", mask=MASK),
        encode_frame(OP_CLOSE, b"\x03\xe8bye", mask=MASK),
        encode_frame(OP_TEXT, b"unmasked"),
    ]


FRAME_SAMPLES = _frames()

HIXIE_SAMPLES = [
    b"\x00hello\xff",
    b"\x00h\xc3\xa9llo \xe2\x98\x83\xff\x00second\xff",
    b"\x80\x05abcde\x00after\xff",
    b"\x81\x81\x01" + b"x" * 129,
    b"\x42skipped\xff\x00text\xff",
    b"\xff\x00",
]

LONGPOLL_SAMPLES = [
    b'{"messages":[{"seq":1,"text":"hi"},{"seq":2,"binary":"AAEC"}]}',
    b'{"messages":[{"seq":3,"close":4000,"reason":"bye"}]}',
    b'{"messages":[{"seq":1,"close":null}]}',
    b'{"subprotocols":["chat"]}',
    b'{"messages":[' + b"[" * 3000 + b"]" * 3000 + b"]}",
]


def _worker_frames() -> list[bytes]:
    import json
    import struct

    def frame(doc) -> bytes:
        body = json.dumps(doc).encode()
        return struct.pack(">I", len(body)) + body

    return [
        frame({"type": "hello", "version": 1, "token": "x"}),
        frame({"type": "result", "id": 7, "value": [1, 2, {"a": None}]}),
        frame({"type": "error", "id": 8, "error": "ValueError", "message": "é"}),
        struct.pack(">I", 6000) + b"[" * 3000 + b"]" * 3000,
    ]


WORKER_SAMPLES = _worker_frames()


@st.composite
def mutated(draw, samples: list[bytes]) -> bytes:
    """A sample (or several glued) with bytes flipped, inserted, deleted or cut off."""
    data = bytearray(b"".join(draw(st.lists(st.sampled_from(samples), min_size=1, max_size=3))))
    for _ in range(draw(st.integers(0, 6))):
        kind = draw(st.sampled_from(["flip", "insert", "delete", "cut", "byte"]))
        pos = draw(st.integers(0, max(0, len(data) - 1)))
        if kind == "flip" and data:
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif kind == "byte" and data:
            data[pos] = draw(st.sampled_from([0, 0x0A, 0x0D, 0x20, 0x3A, 0x7F, 0x80, 0xFF]))
        elif kind == "insert":
            data[pos:pos] = draw(st.binary(max_size=16))
        elif kind == "delete":
            del data[pos : pos + draw(st.integers(1, 8))]
        elif kind == "cut":
            del data[pos:]
    return bytes(data)


def split_points(data: bytes, cuts: list[int]) -> list[bytes]:
    """``data`` cut at the given offsets (taken modulo its length), in order."""
    if not data:
        return [data]
    points = sorted({c % len(data) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in zip(points, points[1:], strict=False)]


def random_blob(rng: random.Random, samples: list[bytes]) -> bytes:
    """Without hypothesis (for the socket fuzz): a mutated sample or plain random bytes."""
    if rng.random() < 0.2:
        return os.urandom(rng.randrange(1, 2048))
    data = bytearray(rng.choice(samples))
    for _ in range(rng.randrange(0, 6)):
        if not data:
            break
        pos = rng.randrange(len(data))
        op = rng.randrange(4)
        if op == 0:
            data[pos] ^= 1 << rng.randrange(8)
        elif op == 1:
            data[pos:pos] = os.urandom(rng.randrange(1, 16))
        elif op == 2:
            del data[pos : pos + rng.randrange(1, 8)]
        else:
            del data[pos:]
    return bytes(data)
