"""The hixie-76/75 codec, byte by byte, without sockets."""

from __future__ import annotations

import itertools
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wsdaemon.proto import hixie
from wsdaemon.proto.errors import HandshakeError
from wsdaemon.proto.http11 import Headers, parse_request_head
from wsdaemon.proto.rfc6455 import EV_ERROR, OP_CLOSE, OP_TEXT

# --- key answers -----------------------------------------------------------

# (key1, key2, key3, answer, where the vector comes from)
VECTORS = [
    (
        "4 @1  46546xW%0l 1 5",
        "12998 5 Y3 1  .P00",
        b"^n:ds[4U",
        b"8jKS'y:G*Co,Wxa-",
        "draft-hixie-thewebsocketprotocol-76 section 1.3",
    ),
    (
        "18x 6]8vM;54 *(5:  {   U1]8  z [  8",
        "1_ tx7X d  <  nw  334J702) 7]o}` 0",
        b"Tm[K T2u",
        b"fQJ,fN/4F4!~K~MH",
        "vti/protocol-websocket t/response_76.t (Perl)",
    ),
    (
        "3e6b263  4 17 80",
        "17  9 G`ZD9   2 2b 7X 3 /r90",
        b"WjN}|M(6",
        b"n`9eBk9z$R8pOtVb",
        "zaphoyd/websocketpp test/processors/hybi00.cpp",
    ),
]


@pytest.mark.parametrize("key1,key2,key3,answer,source", VECTORS, ids=[v[4] for v in VECTORS])
def test_challenge_answer_vectors(key1, key2, key3, answer, source):
    n1 = hixie.key_number(key1)
    n2 = hixie.key_number(key2, "Sec-WebSocket-Key2")
    assert hixie.challenge_answer(n1, n2, key3) == answer


def test_key_numbers_of_the_draft_example():
    # draft-hixie-76 section 1.3 spells out the intermediate numbers.
    assert hixie.key_number("4 @1  46546xW%0l 1 5") == 829309203
    assert hixie.key_number("12998 5 Y3 1  .P00") == 259970620
    # ratchetphp/Ratchet tests/.../Version/Hixie76Test.php keyProvider
    assert hixie.key_number("17  9 G`ZD9   2 2b 7X 3 /r90") == 179922739


def test_challenge_answer_from_numbers():
    # vti/protocol-websocket t/response_76.t: number1/number2/challenge given directly
    key3 = b"\x47\x30\x22\x2d\x5a\x3f\x47\x58"
    assert hixie.challenge_answer(777_007_543, 114_997_259, key3) == b"0st3Rl&q-2ZU^weu"


def test_challenge_answer_needs_eight_bytes():
    with pytest.raises(ValueError):
        hixie.challenge_answer(1, 2, b"1234567")


@pytest.mark.parametrize(
    "key,why",
    [
        ("3e6b6341780", "no spaces"),  # Ratchet keyProvider
        ("17  9 G`ZD9   2 2b 7X 3 /r91", "not a multiple"),  # Ratchet keyProvider
        ("3e6b263 4 17 80", "not a multiple"),  # Ratchet keyProvider: 3626341780 / 3 spaces
        ("3e6b63 4 17 80", "not a multiple"),  # Ratchet keyProvider
        ("   ", "no digits"),
        ("abc def", "no digits"),
        ("4294967296 ", "32 bits"),  # 2**32 with one space
        ("99999999999  ", "32 bits"),
        ("1" * 5000 + " ", "32 bits"),  # no int() of 5000 digits
    ],
)
def test_key_rejections(key, why):
    with pytest.raises(HandshakeError) as info:
        hixie.key_number(key)
    assert info.value.status == 400
    assert why.split()[-1] in info.value.reason


def test_key_limits_accepted():
    assert hixie.key_number("4294967295 ") == 0xFFFFFFFF
    assert hixie.key_number("0" * 5000 + "8  ") == 4  # leading zeros are not overflow
    assert hixie.key_number(" 0 ") == 0
    # Only ASCII digits count: a latin-1 superscript two is not a digit.
    assert hixie.key_number("\xb22 ") == 2


# --- requests and responses ----------------------------------------------------

DRAFT_76_HEAD = (
    b"GET /demo HTTP/1.1\r\n"
    b"Host: example.com\r\n"
    b"Connection: Upgrade\r\n"
    b"Sec-WebSocket-Key2: 12998 5 Y3 1  .P00\r\n"
    b"Sec-WebSocket-Protocol: sample\r\n"
    b"Upgrade: WebSocket\r\n"
    b"Sec-WebSocket-Key1: 4 @1  46546xW%0l 1 5\r\n"
    b"Origin: http://example.com"
)

DRAFT_75_HEAD = (
    b"GET /demo HTTP/1.1\r\n"
    b"Upgrade: WebSocket\r\n"
    b"Connection: Upgrade\r\n"
    b"Host: example.com\r\n"
    b"Origin: http://example.com\r\n"
    b"WebSocket-Protocol: sample"
)


def request(head: bytes, secure: bool = False):
    """Parse ``head``; control characters in header values, which the HTTP parser itself refuses,
    are put back after parsing so the hixie layer's own checks (defence in depth) are tested too."""
    line, sep, fields = head.partition(b"\r\n")
    masked = (
        line
        + sep
        + re.sub(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]", lambda m: b"~CTL%02x~" % m.group()[0], fields)
    )
    req = parse_request_head(masked)
    if masked != head:
        unmask = lambda v: re.sub(r"~CTL([0-9a-f]{2})~", lambda m: chr(int(m.group(1), 16)), v)  # noqa: E731
        req.headers = Headers([(k, unmask(v)) for k, v in req.headers.items()])
    req.secure = secure
    return req


def test_response_76_of_the_draft_example():
    req = request(DRAFT_76_HEAD)
    hixie.validate_request(req)
    assert hixie.offered_subprotocols(req, "Sec-WebSocket-Protocol") == ["sample"]
    n1, n2 = hixie.key_numbers(req)
    wire = hixie.response_76(req, "sample") + hixie.challenge_answer(n1, n2, b"^n:ds[4U")
    # The draft's section 1.3 server handshake, byte for byte.
    assert wire == (
        b"HTTP/1.1 101 WebSocket Protocol Handshake\r\n"
        b"Upgrade: WebSocket\r\n"
        b"Connection: Upgrade\r\n"
        b"Sec-WebSocket-Origin: http://example.com\r\n"
        b"Sec-WebSocket-Location: ws://example.com/demo\r\n"
        b"Sec-WebSocket-Protocol: sample\r\n"
        b"\r\n"
        b"8jKS'y:G*Co,Wxa-"
    )


def test_response_75_has_no_sec_prefix_and_no_body():
    req = request(DRAFT_75_HEAD)
    hixie.validate_request(req)
    assert hixie.offered_subprotocols(req, "WebSocket-Protocol") == ["sample"]
    assert hixie.response_75(req, "sample") == (
        b"HTTP/1.1 101 Web Socket Protocol Handshake\r\n"
        b"Upgrade: WebSocket\r\n"
        b"Connection: Upgrade\r\n"
        b"WebSocket-Origin: http://example.com\r\n"
        b"WebSocket-Location: ws://example.com/demo\r\n"
        b"WebSocket-Protocol: sample\r\n"
        b"\r\n"
    )


def test_response_without_subprotocol_or_origin():
    head = b"GET /a/b?x=1&y=%20 HTTP/1.1\r\nHost: [::1]:8081\r\nConnection: keep-alive, Upgrade\r\nUpgrade: WebSocket"
    req = request(head, secure=True)
    hixie.validate_request(req)
    assert hixie.response_75(req) == (
        b"HTTP/1.1 101 Web Socket Protocol Handshake\r\n"
        b"Upgrade: WebSocket\r\n"
        b"Connection: Upgrade\r\n"
        b"WebSocket-Location: wss://[::1]:8081/a/b?x=1&y=%20\r\n"
        b"\r\n"
    )


def test_location_of_an_absolute_form_target():
    head = b"GET http://example.com:81/chat?room=1 HTTP/1.1\r\nHost: example.com:81\r\nConnection: Upgrade\r\nUpgrade: WebSocket"
    assert hixie.location(request(head)) == "ws://example.com:81/chat?room=1"


@pytest.mark.parametrize(
    "replace,status,reason",
    [
        ((b"GET", b"POST"), 405, "GET"),
        ((b"HTTP/1.1", b"HTTP/1.0"), 400, "HTTP/1.1"),
        ((b"Connection: Upgrade", b"Connection: keep-alive"), 400, "Connection"),
        ((b"Host: example.com", b"Host: exa mple.com"), 400, "Host"),
        ((b"Host: example.com", b"Host: example.com\x01"), 400, "Host"),
        ((b"Host: example.com", b"Host: example.com:99999999"), 400, "Host"),
        ((b"Host: example.com", b"X-Host: example.com"), 400, "Host"),
        ((b"Host: example.com", b"Host: example.com\r\nHost: evil.com"), 400, "Host"),
    ],
)
def test_request_rejections(replace, status, reason):
    req = request(DRAFT_76_HEAD.replace(*replace))
    with pytest.raises(HandshakeError) as info:
        hixie.validate_request(req)
    assert info.value.status == status
    assert reason in info.value.reason


@pytest.mark.parametrize(
    "replace,reason",
    [
        ((b"Origin: http://example.com", b"Origin: http://example.com\x01x"), "Origin"),
        ((b"Origin: http://example.com", b"Origin: http://example.com\x7f"), "Origin"),
        ((b"Origin: http://example.com", b"Origin: http://ex\x85ample.com"), "Origin"),
        ((b"Origin: http://example.com", b"Origin: a\r\nOrigin: b"), "Origin"),
        ((b"GET /demo ", b"GET /de\x01mo "), "request target"),  # the HTTP parser refuses it first
        ((b"GET /demo ", b"GET /d\xe9mo "), "non-ASCII"),
    ],
)
def test_reflected_values_are_checked(replace, reason):
    """Nothing the client sent is written back with a control character in it."""
    with pytest.raises(Exception) as info:
        req = request(DRAFT_76_HEAD.replace(*replace))
        hixie.validate_request(req)
        hixie.response_76(req)
    assert info.value.status == 400
    assert reason in info.value.reason


@pytest.mark.parametrize(
    "value", [b"two words", b"tab\there", b"a\x01b", b"caf\xe9", b"x\r\nSec-WebSocket-Protocol: y"]
)
def test_subprotocol_rejections(value):
    head = DRAFT_76_HEAD.replace(b"sample", value)
    with pytest.raises(HandshakeError) as info:
        hixie.offered_subprotocols(request(head), "Sec-WebSocket-Protocol")
    assert info.value.status == 400


def test_duplicate_key_header_rejected():
    head = DRAFT_76_HEAD + b"\r\nSec-WebSocket-Key1: 1 2"
    with pytest.raises(HandshakeError) as info:
        hixie.key_numbers(request(head))
    assert "exactly one Sec-WebSocket-Key1" in info.value.reason


# --- frames -------------------------------------------------------------------

UNICODE = "héllo ☃ 𝄞 e\u0301 日本語"

STREAM = b"".join(
    [
        b"\x00\xff",  # empty text message
        b"\x00hello\xff",
        hixie.encode_text(UNICODE),
        b"\x05discarded sentinel type\xff",  # a 0x01-0x7F frame: read to 0xFF, discarded
        b"\x80\x81\x48" + bytes(range(56, 256)),  # length 1*128+72 = 200, holds 0xFF, discarded
        b"\x80\x80\x03abc",  # 0x80 is a length byte with the continuation bit: length 3
        b"\x00last\xff",
    ]
)
STREAM_MESSAGES = ["", "hello", UNICODE, "last"]


def texts(events):
    return [v for k, v in events if k == OP_TEXT]


def feed_parts(parser, data, cuts):
    events = []
    prev = 0
    for cut in [*cuts, len(data)]:
        events += parser.feed(data[prev:cut])
        prev = cut
    return events


@pytest.mark.parametrize("closing_handshake", [True, False])
def test_frames_at_once(closing_handshake):
    parser = hixie.FrameParser(1000, closing_handshake)
    assert parser.feed(STREAM) == [(OP_TEXT, m) for m in STREAM_MESSAGES]
    assert parser.buffered == 0


@pytest.mark.parametrize("closing_handshake", [True, False])
def test_frames_split_at_every_offset(closing_handshake):
    for cut in range(len(STREAM) + 1):
        parser = hixie.FrameParser(1000, closing_handshake)
        assert feed_parts(parser, STREAM, [cut]) == [(OP_TEXT, m) for m in STREAM_MESSAGES], cut


def test_frames_split_at_every_pair_of_offsets():
    for a, b in itertools.combinations(range(len(STREAM) + 1), 2):
        parser = hixie.FrameParser(1000)
        assert texts(feed_parts(parser, STREAM, [a, b])) == STREAM_MESSAGES, (a, b)


def test_frames_byte_by_byte():
    parser = hixie.FrameParser(1000)
    assert texts(feed_parts(parser, STREAM, range(1, len(STREAM)))) == STREAM_MESSAGES


def test_many_frames_in_one_chunk():
    messages = [f"message {i} ☃" for i in range(500)]
    parser = hixie.FrameParser(1000)
    assert texts(parser.feed(b"".join(hixie.encode_text(m) for m in messages))) == messages


def test_closing_handshake_76():
    parser = hixie.FrameParser(1000, closing_handshake=True)
    data = b"\x00bye\xff\xff\x00\x00ignored\xff"
    for cut in range(len(data) + 1):
        parser = hixie.FrameParser(1000, closing_handshake=True)
        assert feed_parts(parser, data, [cut]) == [(OP_TEXT, "bye"), (OP_CLOSE, (1000, ""))]
        assert parser.done
        assert parser.feed(b"\x00more\xff") == []


def test_ff_00_is_an_empty_discarded_frame_in_75():
    parser = hixie.FrameParser(1000, closing_handshake=False)
    assert parser.feed(b"\xff\x00\x00still open\xff") == [(OP_TEXT, "still open")]
    assert not parser.done


def test_ff_with_a_length_is_discarded_in_76():
    parser = hixie.FrameParser(1000)
    assert parser.feed(b"\xff\x02xy\x00ok\xff") == [(OP_TEXT, "ok")]


def expect_error(events, code):
    assert events, "no events"
    kind, exc = events[-1]
    assert kind == EV_ERROR, events
    assert exc.code == code, exc.reason
    return exc


def test_invalid_utf8():
    parser = hixie.FrameParser(1000)
    events = parser.feed(b"\x00ok\xff\x00bad \xc3\x28\xff\x00never\xff")
    assert events[0] == (OP_TEXT, "ok")
    expect_error(events[1:], 1007)
    assert parser.done and parser.feed(b"\x00x\xff") == []


@pytest.mark.parametrize(
    "payload",
    [b"\xc3\x28", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xc0\xaf", b"\x80", b"\xfe"],
)
def test_invalid_utf8_fails_before_the_frame_ends(payload):
    parser = hixie.FrameParser(1000)
    assert parser.feed(b"\x00valid so far ") == []
    expect_error(parser.feed(payload), 1007)


def test_utf8_truncated_at_the_end_of_the_frame():
    data = b"\x00caf\xc3\xff"
    for cut in range(len(data) + 1):
        parser = hixie.FrameParser(1000)
        expect_error(feed_parts(parser, data, [cut]), 1007)


def test_utf8_character_split_across_chunks():
    data = hixie.encode_text("𝄞")
    for cut in range(len(data) + 1):
        assert texts(feed_parts(hixie.FrameParser(1000), data, [cut])) == ["𝄞"]


def test_size_limit_exact():
    parser = hixie.FrameParser(10)
    assert parser.feed(b"\x00" + b"a" * 10 + b"\xff") == [(OP_TEXT, "a" * 10)]
    expect_error(parser.feed(b"\x00" + b"a" * 11 + b"\xff"), 1009)


def test_size_limit_split():
    data = b"\x00" + b"a" * 11 + b"\xff"
    for cut in range(len(data) + 1):
        expect_error(feed_parts(hixie.FrameParser(10), data, [cut]), 1009)


@pytest.mark.parametrize("frame_type", [b"\x00", b"\x7f"])
def test_never_terminated_frame_fails_at_the_limit(frame_type):
    """A client that never sends 0xFF cannot grow the buffer past the limit."""
    limit = 4096
    parser = hixie.FrameParser(limit)
    events = parser.feed(frame_type)
    sent = 0
    while not events:
        assert parser.buffered <= limit
        events = parser.feed(b"x" * 100)
        sent += 100
    expect_error(events, 1009)
    assert limit < sent <= limit + 100  # failed by the chunk that crossed the limit
    assert parser.buffered == 0


def test_never_terminated_frame_one_byte_at_a_time():
    parser = hixie.FrameParser(64)
    assert parser.feed(b"\x00") == []
    for _ in range(64):
        assert parser.feed(b"z") == []
    assert parser.buffered == 64
    expect_error(parser.feed(b"z"), 1009)


def test_length_frame_over_the_limit_fails_at_its_header():
    parser = hixie.FrameParser(1000)
    # 0x88 0x69 = 8*128 + 105 = 1129 > 1000: refused before any of its bytes arrive
    expect_error(parser.feed(b"\x80\x88\x69"), 1009)


def test_huge_length_fails_while_its_length_arrives():
    parser = hixie.FrameParser(1000)
    assert parser.feed(b"\x80\x87") == []  # 7*128 so far, more length bytes follow
    expect_error(parser.feed(b"\xff"), 1009)


def test_endless_length_prefix_is_refused():
    parser = hixie.FrameParser(1000)
    events = []
    for _ in range(hixie.MAX_LENGTH_BYTES + 1):
        events += parser.feed(b"\x80")  # continuation bytes of value 0, forever
        if events:
            break
    expect_error(events, 1002)
    assert parser.buffered == 0


def test_binary_frames_are_skipped_without_buffering():
    parser = hixie.FrameParser(10_000)
    assert parser.feed(b"\x80\xce\x10") == []  # length 78*128 + 16 = 10000
    for _ in range(100):
        assert parser.feed(b"\xff" * 100) == []
        assert parser.buffered == 0
    assert parser.feed(b"\x00after\xff") == [(OP_TEXT, "after")]


def test_events_before_an_error_are_kept():
    parser = hixie.FrameParser(5)
    events = parser.feed(b"\x00one\xff\x00two\xff\x00too long\xff")
    assert texts(events) == ["one", "two"]
    expect_error(events, 1009)


def test_encode_text():
    assert hixie.encode_text("") == b"\x00\xff"
    assert hixie.encode_text("hi ☃") == b"\x00hi \xe2\x98\x83\xff"
    assert hixie.CLOSE_FRAME == b"\xff\x00"


@given(
    messages=st.lists(st.text(max_size=40), max_size=20),
    cuts=st.lists(st.integers(min_value=0, max_value=2000), max_size=10),
    closing_handshake=st.booleans(),
)
def test_any_messages_cut_anywhere_round_trip(messages, cuts, closing_handshake):
    data = b"".join(hixie.encode_text(m) for m in messages)
    parser = hixie.FrameParser(1000, closing_handshake)
    events = feed_parts(parser, data, sorted(c for c in cuts if c <= len(data)))
    assert events == [(OP_TEXT, m) for m in messages]
