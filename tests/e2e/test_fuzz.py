"""Fuzzing: random and mutated bytes at every codec, then at the real daemon's sockets.

A codec may only answer bad input with its documented protocol error
(:class:`ProtocolError`/:class:`HandshakeError` from the HTTP parser and the
handshake checks, an ``EV_ERROR`` event from the frame parser); nothing else may
escape. Over sockets, the daemon must log no unhandled error and keep serving.
"""

from __future__ import annotations

import json
import random
import socket
import struct
import time
from collections.abc import Mapping

import pytest
import websocket
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.fuzzing import (
    FRAME_SAMPLES,
    HIXIE_SAMPLES,
    HTTP_SAMPLES,
    LONGPOLL_SAMPLES,
    MASK,
    WORKER_SAMPLES,
    mutated,
    random_blob,
    split_points,
)
from tests.support.rawclient import read_until_closed
from wsdaemon.proto import hixie, longpoll, rfc6455, workerproto
from wsdaemon.proto.errors import HandshakeError, ProtocolError
from wsdaemon.proto.http11 import HttpRequestParser, Request, build_response
from wsdaemon.proto.origin import OriginPolicy, request_origin
from wsdaemon.proto.rfc6455 import EV_ERROR, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG, OP_TEXT, FrameParser
from wsdaemon.proto.session import SessionState
from wsdaemon.transports.upgrade import websocket_protocol

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
CUTS = st.lists(st.integers(0, 1 << 20), max_size=8)

# --- HTTP request parser and handshake checks ---------------------------------------


def _check_request(request: Request) -> None:
    assert isinstance(request.method, str) and request.method
    assert isinstance(request.path, str) and isinstance(request.query, Mapping)
    for name, value in request.headers.items():
        assert "\r" not in value and "\n" not in value and "\x00" not in value
        assert ":" not in name
    # The handshake checks of each dialect may refuse, but only with a status.
    try:
        protocol = websocket_protocol(request)
        if protocol == "rfc6455":
            rfc6455.validate_handshake(request)
            rfc6455.offered_subprotocols(request)
        elif protocol == "hixie-76":
            hixie.validate_request(request)
            hixie.key_numbers(request)
            hixie.response_76(request, None)
        elif protocol == "hixie-75":
            hixie.validate_request(request)
            hixie.response_75(request, None)
        if request.path.startswith("/lp/"):
            longpoll.parse_ack(request.query)
    except HandshakeError as exc:
        assert 400 <= exc.status < 500
        build_response(exc.status, exc.headers)
    policy = OriginPolicy("https://example.com, http://*.example.org:8080, null", allow_missing=False)
    reason = policy.check(request_origin(request.headers))
    assert reason is None or isinstance(reason, str)


@FUZZ
@given(data=st.one_of(st.binary(max_size=3000), mutated(HTTP_SAMPLES)), cuts=CUTS)
def test_http_parser_raises_only_protocol_errors(data, cuts):
    parser = HttpRequestParser(max_header_bytes=2048, max_headers=20)
    try:
        for chunk in split_points(data, cuts):
            request = parser.feed(chunk)
            while request is not None:
                _check_request(request)
                request = parser.feed()
    except ProtocolError as exc:
        assert exc.status in (400, 431, 505), exc
    assert len(parser.buffer) <= len(data)


@FUZZ
@given(data=mutated(HTTP_SAMPLES), cuts=CUTS)
def test_http_parser_gives_the_same_answer_whatever_the_split(data, cuts):
    def parse(chunks):
        parser = HttpRequestParser(max_header_bytes=2048, max_headers=20)
        out = []
        try:
            for chunk in chunks:
                request = parser.feed(chunk)
                while request is not None:
                    out.append((request.method, request.target, request.headers.items()))
                    request = parser.feed()
        except ProtocolError as exc:
            return out + [("error", exc.status)], None  # the buffer does not matter any more
        return out, bytes(parser.buffer)

    whole = parse([data])
    split = parse(split_points(data, cuts))
    if whole[0] and whole[0][-1][0] == "error" and whole[0][-1][1] == 431:
        return  # the size limit may trip before or after a complete head
    assert whole == split


# --- RFC 6455 frame parser ---------------------------------------------------------

_KINDS = {OP_TEXT: str, OP_BINARY: bytes, OP_PING: bytes, OP_PONG: bytes, OP_CLOSE: tuple}


def _events(parser: FrameParser, chunks: list[bytes]) -> list:
    events = []
    for chunk in chunks:
        events.extend(parser.feed(chunk))
    return events


@FUZZ
@given(
    data=st.one_of(st.binary(max_size=3000), mutated(FRAME_SAMPLES)),
    cuts=CUTS,
    max_size=st.sampled_from([0, 5, 1000, 1 << 20]),
    max_frames=st.sampled_from([0, 1, 2, 100]),
)
def test_frame_parser_reports_bad_input_as_one_final_error_event(data, cuts, max_size, max_frames):
    parser = FrameParser(max_size, max_frames_per_message=max_frames)
    events = _events(parser, split_points(data, cuts))
    for i, (kind, value) in enumerate(events):
        if kind == EV_ERROR:
            assert i == len(events) - 1, "an error is the last event"
            assert isinstance(value, ProtocolError)
            assert value.code in (1002, 1007, 1009)
        elif kind == OP_CLOSE:
            assert i == len(events) - 1, "nothing follows a close frame"
            code, reason = value
            assert code == 1005 or rfc6455.is_valid_close_code(code)
        else:
            assert isinstance(value, _KINDS[kind])
            if kind in (OP_TEXT, OP_BINARY):
                size = len(value.encode()) if kind == OP_TEXT else len(value)
                assert size <= max_size
    assert parser.buffered <= len(data)


@FUZZ
@given(data=mutated(FRAME_SAMPLES), cuts=CUTS)
def test_frame_parser_gives_the_same_events_whatever_the_split(data, cuts):
    def norm(events):
        return [(k, v.code if k == EV_ERROR else v) for k, v in events]

    whole = norm(_events(FrameParser(1 << 20), [data]))
    split = norm(_events(FrameParser(1 << 20), split_points(data, cuts)))
    assert whole == split


def test_fragment_limit_closes_with_1009_before_the_payload_arrives():
    parser = FrameParser(1 << 20, max_frames_per_message=3)
    first = rfc6455.encode_frame(OP_TEXT, b"a", fin=False, mask=MASK)
    cont = rfc6455.encode_frame(0, b"b", fin=False, mask=MASK)
    assert parser.feed(first + cont + cont) == []
    events = parser.feed(cont[:2])  # only the header of the 4th frame
    assert [(k, v.code) for k, v in events] == [(EV_ERROR, 1009)]
    assert "more than 3 frames" in events[0][1].reason


def test_fragment_limit_allows_exactly_the_limit():
    parser = FrameParser(1 << 20, max_frames_per_message=3)
    data = (
        rfc6455.encode_frame(OP_BINARY, b"a", fin=False, mask=MASK)
        + rfc6455.encode_frame(0, b"b", fin=False, mask=MASK)
        + rfc6455.encode_frame(0, b"c", fin=True, mask=MASK)
    )
    assert parser.feed(data * 2) == [(OP_BINARY, b"abc"), (OP_BINARY, b"abc")]


# --- hixie-76/75 frame parser ------------------------------------------------------


@FUZZ
@given(
    data=st.one_of(st.binary(max_size=3000), mutated(HIXIE_SAMPLES)),
    cuts=CUTS,
    max_size=st.sampled_from([0, 5, 1000]),
    closing=st.booleans(),
)
def test_hixie_parser_reports_bad_input_as_one_final_error_event(data, cuts, max_size, closing):
    parser = hixie.FrameParser(max_size, closing_handshake=closing)
    events = _events(parser, split_points(data, cuts))
    for i, (kind, value) in enumerate(events):
        if kind == EV_ERROR:
            assert i == len(events) - 1
            assert isinstance(value, ProtocolError) and value.code in (1002, 1007, 1009)
        elif kind == OP_CLOSE:
            assert closing and i == len(events) - 1
        else:
            assert kind == OP_TEXT and isinstance(value, str)
            assert len(value.encode()) <= max_size
    assert parser.buffered <= len(data)


@FUZZ
@given(data=mutated(HIXIE_SAMPLES), cuts=CUTS)
def test_hixie_parser_gives_the_same_events_whatever_the_split(data, cuts):
    def norm(events):
        return [(k, v.code if k == EV_ERROR else v) for k, v in events]

    assert norm(_events(hixie.FrameParser(1000), [data])) == norm(
        _events(hixie.FrameParser(1000), split_points(data, cuts))
    )


# --- long-polling bodies and the session protocol ----------------------------------


@FUZZ
@given(data=st.one_of(st.binary(max_size=2000), mutated(LONGPOLL_SAMPLES)), query=st.text(max_size=30))
def test_long_polling_parsers_raise_only_protocol_errors(data, query):
    state = SessionState(max_bytes=1000)
    try:
        items = longpoll.parse_items(data, 100)
        for kind, *_ in longpoll.receive_items(state, items, False):
            assert kind in (longpoll.EV_TEXT, longpoll.EV_BINARY, longpoll.EV_CLOSE)
    except ProtocolError as exc:
        assert exc.status in (400, 409, 413)
    try:
        longpoll.parse_json_object(data)
    except ProtocolError as exc:
        assert exc.status == 400
    try:
        assert longpoll.parse_ack({"ack": query}) >= 0
    except ProtocolError:
        pass


# --- the worker protocol -----------------------------------------------------------


@FUZZ
@given(data=st.one_of(st.binary(max_size=3000), mutated(WORKER_SAMPLES)), cuts=CUTS)
def test_worker_frame_decoder_raises_only_frame_errors(data, cuts):
    decoder = workerproto.FrameDecoder(max_size=workerproto.HELLO_MAX_FRAME)
    try:
        for chunk in split_points(data, cuts):
            for message in decoder.feed(chunk):
                assert isinstance(message, dict) and isinstance(message["type"], str)
    except workerproto.FrameError:
        pass
    assert decoder.buffered <= len(data)


def test_deeply_nested_json_is_a_protocol_error_not_a_crash():
    nested = b"[" * 100_000 + b"]" * 100_000
    with pytest.raises(ProtocolError, match="nested too deeply") as info:
        longpoll.parse_items(b'{"messages":' + nested + b"}", 1 << 20)
    assert info.value.status == 400
    with pytest.raises(workerproto.FrameError, match="nested too deeply"):
        workerproto.FrameDecoder().feed(struct.pack(">I", len(nested)) + nested)


# --- the real daemon ---------------------------------------------------------------


def _handshake(path: str = "/") -> bytes:
    return (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()


def _open_long_polling_session(d) -> str:
    answer = read_until_closed(
        _send(d, b"POST /lp/open HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"),
        timeout=10,
    )
    assert answer.startswith(b"HTTP/1.1 200"), answer
    return json.loads(answer.partition(b"\r\n\r\n")[2])["session"]


def _send(d, data: bytes) -> socket.socket:
    s = socket.create_connection((d.host, d.port), timeout=10)
    s.sendall(data)
    return s


def test_fuzz_over_real_sockets_leaves_the_daemon_serving(daemon_factory):
    """Mutated requests and, behind valid handshakes, mutated RFC 6455 frames, hixie-76 frames and
    long-polling bodies; the client then vanishes (RST), half-closes and reads, or just closes."""
    d = daemon_factory("--handshake-timeout", "2", app="wsdaemon.apps.echo:app")
    steady = websocket.create_connection(d.url, timeout=10)
    rng = random.Random(6455)
    hixie76 = HTTP_SAMPLES[2].replace(b"^n:ds[4U", b"")  # the head; its key3 follows
    session = _open_long_polling_session(d)

    def long_polling_post() -> bytes:
        body = random_blob(rng, LONGPOLL_SAMPLES)
        path = "/lp/open" if rng.random() < 0.3 else f"/lp/{session}/send"
        return f"POST {path} HTTP/1.1\r\nHost: a\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body

    makers = [
        lambda: random_blob(rng, HTTP_SAMPLES),
        lambda: _handshake() + random_blob(rng, FRAME_SAMPLES),
        lambda: hixie76 + b"^n:ds[4U" + random_blob(rng, HIXIE_SAMPLES),
        long_polling_post,
    ]
    sent = 0
    start = time.monotonic()
    for i in range(400):
        if time.monotonic() - start > 60:
            break
        blob = makers[i % 4]()
        with socket.create_connection((d.host, d.port), timeout=5) as s:
            try:
                s.sendall(blob)
            except ConnectionError:
                continue
            sent += 1
            how = rng.randrange(3)
            if how == 0:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # RST
            elif how == 1:
                s.shutdown(socket.SHUT_WR)
                reply = read_until_closed(s, timeout=5)
                if reply.startswith(b"HTTP/1.1 "):
                    assert reply[9:12].isdigit()
        if i % 50 == 0:
            steady.send(f"still there {i}")
            assert steady.recv() == f"still there {i}"
    assert sent >= 300
    steady.send("end")
    assert steady.recv() == "end"
    fresh = websocket.create_connection(d.url, timeout=10)
    fresh.send("after the storm")
    assert fresh.recv() == "after the storm"
    fresh.close()
    steady.close()
    assert d.alive()
    log = d.log()
    assert "unhandled error" not in log and "Traceback" not in log, log[-3000:]
    # the fuzz reached every layer: HTTP errors, frame errors, hixie, long-polling bodies
    for seen in ("bad request: 400", "failing <Rfc6455Connection", "open hixie-76", "/send: 400"):
        assert seen in log, f"the fuzz never produced {seen!r}"
