"""The connection chosen at the handshake: plain stays plain, compression is lazy, reload is per connection.

In-process (socket pairs, the test turns the loop): what the swap builds for each offer, that
zlib objects exist only while a message needs them, that a reload changes new connections only,
and that :func:`wsdaemon.transports.fanout.fan_out` writes one compressed frame to every connection that can share it.
"""

from __future__ import annotations

import zlib
from dataclasses import replace

import pytest

from tests.support.inprocess import SlowReader, connect, echo_app, make_server, turn
from tests.support.rawclient import MASK, handshake_request
from wsdaemon.proto.deflate_frames import DeflateFrameParser
from wsdaemon.proto.permessage_deflate import deflate_memory, inflate_memory
from wsdaemon.proto.rfc6455 import FrameParser, encode_frame
from wsdaemon.transports.rfc6455_connection import Rfc6455Connection
from wsdaemon.transports.rfc6455_deflate import Rfc6455DeflateConnection

OFFER = "permessage-deflate; client_max_window_bits"
MESSAGE = b'{"type": "state", "players": [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]}'  # 69 bytes: compressed, and short frames


def deflated(data: bytes) -> bytes:
    c = zlib.compressobj(6, zlib.DEFLATED, -12)
    return (c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH))[:-4]


def compressed_frame(data: bytes) -> bytes:
    frame = bytearray(encode_frame(0x2, deflated(data), mask=MASK))
    frame[0] |= 0x40
    return bytes(frame)


def open_ws(server, offer: str | None = OFFER, path: str = "/"):
    """(the connection object the swap installed, the client, the 101 head)."""
    _, sock = connect(server, size=1 << 20)
    client = SlowReader(server.loop, sock, chunk=1 << 20)
    headers = {"Sec-WebSocket-Extensions": offer} if offer else None
    client.send(handshake_request(path, headers))
    head = client.take_head()
    return server.app.opened[-1], client, head


def read_frame(client: SlowReader) -> tuple[int, bytes]:
    client.pump(lambda got: len(got) >= 2 and len(got) >= 2 + (got[1] & 0x7F))
    got = client.take(2)
    return got[0], client.take(got[1] & 0x7F)


@pytest.fixture
def server():
    server = make_server()
    yield server
    server.close()


def test_plain_connections_keep_the_plain_parser_and_send(server):
    conn, _, head = open_ws(server, offer=None)
    assert type(conn) is Rfc6455Connection and type(conn.parser) is FrameParser
    assert conn.compression is None and b"Sec-WebSocket-Extensions" not in head
    declined, _, head = open_ws(server, offer="x-webkit-deflate-frame")
    assert type(declined) is Rfc6455Connection and b"Sec-WebSocket-Extensions" not in head


def test_a_compressing_connection_gets_its_own_parser(server):
    conn, _, head = open_ws(server)
    assert type(conn) is Rfc6455DeflateConnection and type(conn.parser) is DeflateFrameParser
    assert conn.parser.deflate is conn.deflate
    assert f"Sec-WebSocket-Extensions: {conn.compression.response_header}\r\n".encode() in head


def test_zlib_state_is_created_on_first_use_and_kept_only_with_context_takeover():
    server = make_server(compression_context_takeover="on")
    try:
        conn, client, _ = open_ws(server)
        assert conn.deflate.zlib_memory == 0  # nothing at the handshake
        client.send(compressed_frame(MESSAGE))
        b0, payload = read_frame(client)
        assert b0 == 0xC2 and zlib.decompressobj(-15).decompress(payload + b"\x00\x00\xff\xff") == MESSAGE
        assert conn.deflate.zlib_memory == deflate_memory(12, 5) + inflate_memory(12)
        conn.close()
        client.send(encode_frame(0x8, b"\x03\xe8", mask=MASK))  # the client's answer
        for _ in range(3):
            turn(server.loop)
        assert conn.closed and conn.deflate.zlib_memory == 0
    finally:
        server.close()


def test_without_context_takeover_nothing_outlives_a_message(server):
    conn, client, _ = open_ws(server)
    assert conn.compression.server_no_context_takeover and conn.compression.client_no_context_takeover
    for _ in range(3):
        client.send(compressed_frame(MESSAGE))
        b0, _ = read_frame(client)
        assert b0 == 0xC2
        assert conn.deflate.zlib_memory == 0


def test_reload_changes_new_connections_only(server):
    before, _, _ = open_ws(server)
    server.reload(replace(server.settings, compression="off"))
    after, _, head = open_ws(server)
    assert type(after) is Rfc6455Connection and b"Sec-WebSocket-Extensions" not in head
    assert before.compression is not None
    server.reload(replace(server.settings, compression="on", compression_window_bits=10))
    narrowed, _, _ = open_ws(server)
    assert narrowed.compression.server_max_window_bits == 10
    assert before.compression.server_max_window_bits == 12


def test_application_switch():
    app = echo_app()
    app.compression = False
    server = make_server(app)
    try:
        conn, _, head = open_ws(server)
        assert conn.compression is None and b"Sec-WebSocket-Extensions" not in head
        app.compression = lambda request: request.path == "/z"
        assert open_ws(server)[0].compression is None
        assert open_ws(server, path="/z")[0].compression is not None
    finally:
        server.close()


def test_fan_out_compresses_once_for_all_that_can_share(server):
    shared = [open_ws(server) for _ in range(3)]
    plain = open_ws(server, offer=None)
    text = MESSAGE.decode()
    calls = []
    original = shared[0][0].deflate.compress_broadcast.__func__

    def counting(self, payload, cache):
        calls.append(self)
        return original(self, payload, cache)

    type(shared[0][0].deflate).compress_broadcast = counting
    try:
        assert server.broadcast(text) == 4
    finally:
        type(shared[0][0].deflate).compress_broadcast = original
    turn(server.loop)
    frames = [read_frame(client) for _, client, _ in shared]
    assert len(calls) == 1  # compressed once, for three connections
    assert frames[0] == frames[1] == frames[2] and frames[0][0] == 0xC1
    assert read_frame(plain[1]) == (0x81, MESSAGE)
    assert server.broadcast("short") == 4  # below --compression-min-size: the plain frame for all
    turn(server.loop)
    assert [read_frame(client) for _, client, _ in shared] == [(0x81, b"short")] * 3


def test_keyed_and_volatile_sends_on_a_compressing_connection(server):
    """``key=`` and ``volatile=`` work on a connection that negotiated permessage-deflate: the keyed
    message goes out compressed (RSV1), a publish to the room shares the path, and a volatile send
    is dropped while the connection is backlogged."""
    conn, client, _ = open_ws(server)
    assert isinstance(conn, Rfc6455DeflateConnection)
    conn.send(MESSAGE.decode(), key="state")
    turn(server.loop)
    first, payload = read_frame(client)
    assert first == 0xC1  # FIN + RSV1 + text
    assert zlib.decompressobj(-12).decompress(payload + b"\x00\x00\xff\xff") == MESSAGE
    conn.join("arena")
    assert server.publish("arena", MESSAGE, key="state") == 1
    turn(server.loop)
    first, payload = read_frame(client)
    assert first == 0xC2  # FIN + RSV1 + binary
    assert zlib.decompressobj(-12).decompress(payload + b"\x00\x00\xff\xff") == MESSAGE
    dropped = conn.dropped
    for _ in range(32):  # the client does not read: the kernel's buffers fill, then ours
        if conn.backlogged:
            break
        conn.write(b"x" * (128 << 10))
        turn(server.loop)
    assert conn.backlogged
    conn.send(MESSAGE, volatile=True)
    assert conn.dropped == dropped + 1
