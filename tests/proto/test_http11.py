"""HttpRequestParser: incremental parsing, limits, and the bytes after the head."""

import dataclasses

import pytest

from wsdaemon.proto.errors import ProtocolError
from wsdaemon.proto.http11 import (
    Headers,
    HttpRequestParser,
    build_response,
    error_response,
    parse_request_head,
)

REQUEST = (
    b"GET /chat?room=1&x=%20y HTTP/1.1\r\n"
    b"Host: example.com:8081\r\n"
    b"Upgrade: websocket\r\n"
    b"Connection: keep-alive, Upgrade\r\n"
    b"Cookie: session=abc; theme=dark\r\n"
    b"Sec-WebSocket-Protocol: chat.v2, chat.v1\r\n"
    b"\r\n"
)
BODY = b"^n:ds[4U\x00hello\xff"


def feed_in_pieces(data: bytes, split: int):
    parser = HttpRequestParser()
    first = parser.feed(data[:split])
    second = parser.feed(data[split:])
    return parser, first, second


@pytest.mark.parametrize("split", range(len(REQUEST + BODY) + 1))
def test_split_at_every_offset_keeps_the_bytes_after_the_head(split):
    parser, first, second = feed_in_pieces(REQUEST + BODY, split)
    request = first or second
    assert not (first and second)
    assert request.method == "GET"
    assert request.path == "/chat"
    assert request.query == {"room": "1", "x": " y"}
    assert request.headers["host"] == "example.com:8081"
    assert request.headers.tokens("connection") == ["keep-alive", "upgrade"]
    assert request.headers.tokens_raw("Sec-WebSocket-Protocol") == ["chat.v2", "chat.v1"]
    assert request.cookies == {"session": "abc", "theme": "dark"}
    assert bytes(parser.buffer) == BODY


def test_byte_by_byte():
    parser = HttpRequestParser()
    results = [parser.feed(bytes([b])) for b in REQUEST]
    assert all(r is None for r in results[:-1])
    assert results[-1].path == "/chat"


def test_two_pipelined_requests():
    parser = HttpRequestParser()
    data = b"GET /a HTTP/1.1\r\nHost: h\r\n\r\nGET /b HTTP/1.1\r\nHost: h\r\n\r\n"
    assert parser.feed(data).path == "/a"
    assert parser.feed().path == "/b"
    assert parser.feed() is None


def test_lf_only_lines_are_not_a_head():
    parser = HttpRequestParser(max_header_bytes=64)
    assert parser.feed(b"GET / HTTP/1.1\nHost: h\n\n") is None


def test_header_too_large_is_431_before_the_head_ends():
    parser = HttpRequestParser(max_header_bytes=100)
    with pytest.raises(ProtocolError) as err:
        parser.feed(b"GET / HTTP/1.1\r\nX: " + b"a" * 200)
    assert err.value.status == 431


def test_complete_head_over_the_limit_is_431():
    parser = HttpRequestParser(max_header_bytes=40)
    with pytest.raises(ProtocolError) as err:
        parser.feed(b"GET / HTTP/1.1\r\nHost: " + b"h" * 40 + b"\r\n\r\n")
    assert err.value.status == 431


def test_too_many_headers_is_431():
    parser = HttpRequestParser(max_headers=3)
    head = b"GET / HTTP/1.1\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(4)) + b"\r\n"
    with pytest.raises(ProtocolError) as err:
        parser.feed(head)
    assert err.value.status == 431


@pytest.mark.parametrize(
    "head,status",
    [
        (b"GARBAGE", 400),
        (b"GET /  HTTP/1.1", 400),
        (b"GET / HTTP/2.0", 505),
        (b"GET / HTTP/1.1\r\nNo colon here", 400),
        (b"GET / HTTP/1.1\r\nBad Name: x", 400),
        (b"GET / HTTP/1.1\r\nX: a\x00b", 400),
        (b"GET /\xff HTTP/1.1", 400),
    ],
)
def test_malformed_heads(head, status):
    with pytest.raises(ProtocolError) as err:
        parse_request_head(head)
    assert err.value.status == status


def test_headers_are_case_insensitive_and_repeatable():
    headers = Headers([("X-A", "1"), ("x-a", "2"), ("Host", "h")])
    assert headers.get("X-A") == "1, 2"
    assert headers.get_all("x-A") == ["1", "2"]
    assert "HOST" in headers
    assert headers.get("missing") is None


def test_keep_alive_rules():
    assert parse_request_head(b"GET / HTTP/1.1\r\nHost: h").keep_alive
    assert not parse_request_head(b"GET / HTTP/1.1\r\nConnection: close").keep_alive
    assert not parse_request_head(b"GET / HTTP/1.0").keep_alive
    assert parse_request_head(b"GET / HTTP/1.0\r\nConnection: keep-alive").keep_alive


def test_build_response_refuses_header_injection():
    with pytest.raises(ValueError):
        build_response(200, [("X-Echo", "a\r\nSet-Cookie: evil=1")])


def test_error_response_is_a_real_http_response():
    data = error_response(404, "not found")
    assert data.startswith(b"HTTP/1.1 404 Not Found\r\n")
    assert b"Content-Length: 10\r\n" in data
    assert data.endswith(b"\r\n\r\nnot found\n")


def test_query_gives_one_string_per_key_and_every_value_on_request():
    """``request.query.get("token")`` is what newcomers write: a str, not parse_qs's list (issue 12.10)."""
    request = HttpRequestParser().feed(
        b"GET /play?token=abc&room=1&room=2&empty= HTTP/1.1\r\nHost: h\r\n\r\n"
    )
    query = request.query
    assert query.get("token") == "abc"
    assert query["room"] == "2"  # the last of repeats, as Starlette does
    assert query.getall("room") == ["1", "2"] == query.getlist("room")
    assert query.getall("missing") == []
    assert query.get("missing") is None
    assert query["empty"] == ""
    assert {"token": "x"}.get(query.get("token"), "hashable") == "hashable"  # a str key, no TypeError
    assert query.multi_items() == [("token", "abc"), ("room", "1"), ("room", "2"), ("empty", "")]
    assert len(query) == 3 and sorted(query) == ["empty", "room", "token"]


def _seen(parse, head):
    """Everything the parsed request shows, as plain values (Headers and QueryParams compare by
    identity), or the error's status and reason."""
    try:
        request = parse(head, 100)
    except ProtocolError as exc:
        return exc.status, str(exc)
    fields = {
        f.name: getattr(request, f.name)
        for f in dataclasses.fields(request)
        if f.name not in ("headers", "query")
    }
    return fields, request.headers.items(), request.query.multi_items()


@pytest.mark.parametrize(
    "head",
    [
        REQUEST[:-4],
        b"GET / HTTP/1.0",
        b"OPTIONS * HTTP/1.1\r\nHost: x",
        b"GET /a%2Fb?x=1&x=2&y HTTP/1.1\r\nX-Empty:\r\nX-T: \t v \t\r\nhost: again\r\nCookie: a=1\r\nCookie: b=2",
        b"GET http://example.com/p?q=1 HTTP/1.1\r\nHost: example.com",
        b"GET / HTTP/1.1\r\nX: caf\xe9",
        b"GET / HTTP/1.1\n",
        b"GET / HTTP/1.1\r\nX: a\rb",
        b"GET / HTTP/1.1" + b"\r\nX: 1" * 101,
    ],
)
def test_the_fast_path_parses_as_the_line_by_line_path(head):
    from wsdaemon.proto.http11 import _parse_checked

    assert _seen(parse_request_head, head) == _seen(_parse_checked, head)


@pytest.mark.parametrize(
    "value,expected",
    [
        ("Upgrade", True),
        ("keep-alive, Upgrade", True),
        ("keep-alive,  upgrade ", True),
        ("upgraded", False),
        ("", False),
    ],
)
def test_has_token_is_token_in_tokens(value, expected):
    headers = Headers([("Connection", value)])
    assert headers.has_token("Connection", "upgrade") is expected
    assert ("upgrade" in headers.tokens("Connection")) is expected


def test_compacted_headers_answer_as_before_and_share_common_values():
    from wsdaemon.proto import http11

    head = b"GET / HTTP/1.1\r\nHost: example.com\r\nUpgrade: websocket\r\nX-A: 1\r\nx-a: 2\r\nConnection: Upgrade"
    first, second = parse_request_head(head), parse_request_head(head)
    before = (
        first.headers.items(),
        first.headers.get("x-a"),
        first.headers.get_all("X-A"),
        len(first.headers),
    )
    first.headers.compact()
    second.headers.compact()
    headers = first.headers
    assert (headers.items(), headers.get("x-a"), headers.get_all("X-A"), len(headers)) == before
    assert "upgrade" in headers and headers.has_token("connection", "upgrade") and "nope" not in headers
    assert headers.get("Host") is second.headers.get("Host")  # one string for both requests
    headers.add("X-B", "3")  # back to the lookup form
    assert headers.get("x-b") == "3" and len(headers) == 6
    assert len(http11._SHARED_VALUES) <= http11._SHARED_MAX and len(http11._NAMES) <= http11._NAMES_MAX
