"""HttpConnection in process, on the real server's router: pipelining, limits, timeouts, bodies, keep-alive."""

import json
import time

import pytest

from tests.support.inprocess import SlowReader, connect, make_server, status_of, turn
from wsdaemon.transports.http import PIPELINE_HIGH_WATER
from wsdaemon.transports.static import load_static_file

SCRIPT = load_static_file("wsdaemon.js")
INDEX = load_static_file("index.html")


def get(path: str, *headers: str, version: str = "1.1") -> bytes:
    lines = [f"GET {path} HTTP/{version}", "Host: 127.0.0.1", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def post_open(body: bytes, *headers: str, length: bool = True) -> bytes:
    lines = ["POST /lp/open HTTP/1.1", "Host: 127.0.0.1", *headers]
    if length:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


@pytest.fixture
def server():
    made = []

    def make(**settings):
        made.append(make_server(**settings))
        return made[-1]

    yield make
    for s in made:
        s.close()


def client_of(server, chunk: int = 4096):
    conn, sock = connect(server)
    return conn, SlowReader(server.loop, sock, chunk)


def wait(server, seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        turn(server.loop)
        time.sleep(0.01)


# -- pipelining -------------------------------------------------------------------


def test_requests_in_one_read_are_answered_in_order(server):
    srv = server()
    conn, client = client_of(srv)
    client.send(get("/") + get("/wsdaemon.js") + get("/index.html", "Connection: close") + get("/"))
    head, body = client.take_response()
    assert status_of(head) == 200 and body == INDEX
    head, body = client.take_response()
    assert status_of(head) == 200 and body == SCRIPT
    head, body = client.take_response()
    assert status_of(head) == 200 and b"Connection: close" in head and body == INDEX
    client.pump(lambda got: client.eof)  # the request after "close" is not answered
    assert not client.received


def test_pipelined_answers_pause_at_the_high_water_mark_until_the_client_reads(server):
    srv = server()
    conn, client = client_of(srv)
    count = PIPELINE_HIGH_WATER // len(SCRIPT) + 3
    client.send(get("/wsdaemon.js") * count)
    for _ in range(3):
        turn(srv.loop)  # the client reads nothing
    assert conn._pipeline_waiting
    assert conn.buffered_amount < PIPELINE_HIGH_WATER + 2 * len(SCRIPT)
    for _ in range(count):
        head, body = client.take_response()
        assert status_of(head) == 200 and body == SCRIPT
    client.idle()
    assert not client.received and not conn._pipeline_waiting and not conn.transport_closed


def test_a_client_that_pipelines_without_reading_is_dropped(server):
    srv = server()
    conn, client = client_of(srv)
    request = get("/wsdaemon.js")
    client.send(request * (PIPELINE_HIGH_WATER // len(SCRIPT) + 3))
    turn(srv.loop)
    assert conn._pipeline_waiting
    sent = 0
    while not conn.transport_closed and sent < 2 * 1024 * 1024:
        try:
            sent += client.sock.send(request * 100)
        except (BlockingIOError, ConnectionError):
            pass
        turn(srv.loop)
    assert conn.transport_closed


# -- limits -----------------------------------------------------------------------


def test_a_request_head_over_max_header_bytes_is_431(server):
    srv = server(max_header_bytes=1024)
    conn, client = client_of(srv)
    client.send(get("/", "X-Filler: " + "a" * 2000))
    head, body = client.take_response()
    assert status_of(head) == 431 and b"Connection: close" in head
    client.pump(lambda got: client.eof)


def test_a_head_that_never_ends_is_431_before_it_is_complete(server):
    srv = server(max_header_bytes=1024)
    conn, client = client_of(srv)
    client.send(b"GET / HTTP/1.1\r\nX-Filler: " + b"a" * 2000)
    head, _ = client.take_response()
    assert status_of(head) == 431


def test_too_many_headers_is_431(server):
    srv = server(max_headers=5)
    conn, client = client_of(srv)
    client.send(get("/", *(f"X-{i}: {i}" for i in range(10))))
    head, _ = client.take_response()
    assert status_of(head) == 431


def test_a_malformed_request_line_is_400(server):
    srv = server()
    conn, client = client_of(srv)
    client.send(b"NOT HTTP\r\n\r\n")
    head, _ = client.take_response()
    assert status_of(head) == 400


# -- timeouts ---------------------------------------------------------------------


def test_a_request_head_not_complete_within_the_handshake_timeout_is_408(server):
    srv = server(handshake_timeout=0.2)
    srv.deadlines.start()
    conn, client = client_of(srv)
    client.send(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    wait(srv, 0.1)
    assert not client.received
    head, body = client.take_response(timeout=2)
    assert status_of(head) == 408 and body == b"request timeout\n"
    client.pump(lambda got: client.eof)


def test_an_idle_keep_alive_connection_is_closed_silently_at_the_timeout(server):
    srv = server(handshake_timeout=0.2)
    srv.deadlines.start()
    conn, client = client_of(srv)
    client.send(get("/"))
    client.take_response()
    client.pump(lambda got: client.eof, timeout=2)
    assert not client.received and conn.transport_closed


def test_a_body_not_complete_within_the_handshake_timeout_is_408(server):
    srv = server(handshake_timeout=0.2)
    srv.deadlines.start()
    conn, client = client_of(srv)
    client.send(post_open(b"{}")[:-1])
    head, _ = client.take_response(timeout=2)
    assert status_of(head) == 408


# -- bodies -----------------------------------------------------------------------


def test_a_body_in_the_same_read_as_its_head(server):
    srv = server()
    conn, client = client_of(srv)
    client.send(post_open(b'{"protocols": []}') + get("/"))
    head, body = client.take_response()
    assert status_of(head) == 200 and "session" in json.loads(body)
    head, body = client.take_response()
    assert status_of(head) == 200 and body == INDEX


def test_a_body_that_arrives_in_pieces(server):
    srv = server()
    conn, client = client_of(srv)
    request = post_open(b'{"protocols": ["a", "b"]}')
    for i in range(0, len(request), 7):
        client.send(request[i : i + 7])
        turn(srv.loop)
    head, body = client.take_response()
    assert status_of(head) == 200 and "session" in json.loads(body)


def test_expect_100_continue_is_answered_before_the_body_is_read(server):
    srv = server()
    conn, client = client_of(srv)
    body = b"{}"
    client.send(post_open(body, "Expect: 100-continue")[: -len(body)])
    client.pump(lambda got: b"\r\n\r\n" in got)
    assert client.take_head() == b"HTTP/1.1 100 Continue\r\n\r\n"
    assert conn.busy
    client.send(body)
    head, doc = client.take_response()
    assert status_of(head) == 200 and "session" in json.loads(doc)


def test_a_chunked_body_is_411(server):
    srv = server()
    conn, client = client_of(srv)
    client.send(post_open(b"2\r\n{}\r\n0\r\n\r\n", "Transfer-Encoding: chunked", length=False))
    head, body = client.take_response()
    assert status_of(head) == 411 and json.loads(body)["status"] == 411
    client.pump(lambda got: client.eof)


def test_a_body_over_the_limit_is_413_before_it_is_read(server):
    srv = server(longpoll_max_body=100)
    conn, client = client_of(srv)
    client.send(post_open(b"x" * 101)[:-101])
    head, body = client.take_response()
    assert status_of(head) == 413 and json.loads(body)["status"] == 413
    client.pump(lambda got: client.eof)


# -- keep-alive -------------------------------------------------------------------


def test_http11_keeps_the_connection_between_requests(server):
    srv = server()
    conn, client = client_of(srv)
    for _ in range(3):
        client.send(get("/wsdaemon.js"))
        head, body = client.take_response()
        assert status_of(head) == 200 and b"Connection: keep-alive" in head and body == SCRIPT
    assert not conn.transport_closed


def test_http10_closes_after_the_answer_unless_asked_to_keep_alive(server):
    srv = server()
    conn, client = client_of(srv)
    client.send(get("/", "Connection: keep-alive", version="1.0"))
    head, _ = client.take_response()
    assert b"Connection: keep-alive" in head
    client.send(get("/", version="1.0"))
    head, _ = client.take_response()
    assert b"Connection: close" in head
    client.pump(lambda got: client.eof)


def test_close_if_idle_closes_only_a_connection_between_requests(server):
    srv = server()
    idle, idle_client = client_of(srv)
    idle_client.send(get("/"))
    idle_client.take_response()
    busy, busy_client = client_of(srv)
    busy_client.send(post_open(b"{}")[:-1])  # a body is being read
    turn(srv.loop)
    idle.close_if_idle()
    busy.close_if_idle()
    assert idle.transport_closed and not busy.transport_closed
