"""The swap: an HTTP connection that turns into a WebSocket loses no byte in either direction.

A client pipelines ``GET /wsdaemon.js`` and an upgrade on one connection and
reads slowly through 4 KiB socket buffers: it must get every byte of the script,
in order, then the ``101``, then a working WebSocket. Long-polling does not swap;
its answers on one keep-alive connection must come in order and complete too.
"""

import json
import random

import pytest

from tests.support.hixie_client import expected_answer, make_key
from tests.support.inprocess import SlowReader, connect, make_server, status_of
from tests.support.rawclient import MASK, handshake_request
from wsdaemon.proto.rfc6455 import OP_TEXT, encode_frame
from wsdaemon.transports.static import load_static_file

SCRIPT = load_static_file("wsdaemon.js")
GET_SCRIPT = b"GET /wsdaemon.js HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


@pytest.fixture
def server():
    server = make_server()
    yield server
    server.close()


def hixie_request(draft: int) -> tuple[bytes, bytes, bytes]:
    """(request head, key3, expected challenge answer); key3 and answer are empty for -75."""
    lines = [
        "GET /chat HTTP/1.1",
        "Upgrade: WebSocket",
        "Connection: Upgrade",
        "Host: 127.0.0.1",
        "Origin: http://127.0.0.1",
    ]
    key3 = answer = b""
    if draft == 76:
        rng = random.Random(76)
        key1, number1 = make_key(rng)
        key2, number2 = make_key(rng)
        key3 = bytes(rng.getrandbits(8) for _ in range(8))
        answer = expected_answer(number1, number2, key3)
        lines += [f"Sec-WebSocket-Key1: {key1}", f"Sec-WebSocket-Key2: {key2}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"), key3, answer


def read_script(client: SlowReader) -> None:
    head, body = client.take_response()
    assert status_of(head) == 200, head
    assert body == SCRIPT, f"{len(body)} bytes of the script, not {len(SCRIPT)}"


def rfc6455_echo(client: SlowReader) -> None:
    client.send(encode_frame(OP_TEXT, b"hello", mask=MASK))
    client.pump(lambda got: len(got) >= 7)
    assert client.take(7) == b"\x81\x05hello"


def hixie_echo(client: SlowReader) -> None:
    client.send(b"\x00hello\xff")
    client.pump(lambda got: len(got) >= 7)
    assert client.take(7) == b"\x00hello\xff"


@pytest.mark.parametrize("scripts", [1, 3], ids=["one-script", "three-scripts-past-the-high-water"])
@pytest.mark.parametrize("frame_too", [False, True], ids=["upgrade", "upgrade-and-frame"])
def test_rfc6455_upgrade_behind_a_pipelined_script(server, scripts, frame_too):
    conn, sock = connect(server)
    client = SlowReader(server.loop, sock)
    first_frame = encode_frame(OP_TEXT, b"early", mask=MASK) if frame_too else b""
    client.send(GET_SCRIPT * scripts + handshake_request("/chat") + first_frame)
    for _ in range(scripts):
        read_script(client)
    head = client.take_head()
    assert status_of(head) == 101, head
    assert b"Sec-WebSocket-Accept:" in head
    if frame_too:
        client.pump(lambda got: len(got) >= 7)
        assert client.take(7) == b"\x81\x05early"
    rfc6455_echo(client)
    assert not client.received
    client.close()


@pytest.mark.parametrize("key3_later", [False, True], ids=["key3-in-the-same-write", "key3-after-the-head"])
def test_hixie76_upgrade_behind_a_pipelined_script(server, key3_later):
    conn, sock = connect(server)
    client = SlowReader(server.loop, sock)
    head, key3, answer = hixie_request(76)
    if key3_later:
        client.send(GET_SCRIPT + head)
        read_script(client)
        client.idle()
        assert not client.received, "answered before key3 arrived"
        client.send(key3)
    else:
        client.send(GET_SCRIPT + head + key3)
        read_script(client)
    response = client.take_head()
    assert status_of(response) == 101, response
    assert b"Sec-WebSocket-Location: ws://127.0.0.1/chat" in response
    client.pump(lambda got: len(got) >= 16)
    assert client.take(16) == answer
    hixie_echo(client)
    client.close()


def test_hixie75_upgrade_behind_a_pipelined_script(server):
    conn, sock = connect(server)
    client = SlowReader(server.loop, sock)
    head, _, _ = hixie_request(75)
    client.send(GET_SCRIPT + head)
    read_script(client)
    response = client.take_head()
    assert status_of(response) == 101, response
    assert b"WebSocket-Location: ws://127.0.0.1/chat" in response
    hixie_echo(client)
    client.close()


def test_long_polling_answers_in_order_on_one_keep_alive_connection(server):
    """GET + open pipelined, then a held poll with a GET behind it: every answer, complete, in order."""
    conn, sock = connect(server)
    client = SlowReader(server.loop, sock)
    open_request = b"POST /lp/open HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n"
    client.send(GET_SCRIPT + open_request)
    read_script(client)
    head, body = client.take_response()
    assert status_of(head) == 200, head
    session_id = json.loads(body)["session"]
    (session,) = server.app.opened

    poll = f"GET /lp/{session_id}/poll?ack=0 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
    client.send(poll + GET_SCRIPT)
    client.idle()
    assert not client.received, "the poll was answered with nothing to deliver"
    assert session.carrier.poll is not None  # the long-polling carrier holds it
    session.send("pushed")
    head, body = client.take_response()
    assert status_of(head) == 200, head
    assert [m["text"] for m in json.loads(body)["messages"]] == ["pushed"]
    read_script(client)
    assert not client.received
    client.close()
