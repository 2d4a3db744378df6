"""A slow reader pipelines ``GET /wsdaemon.js`` and an upgrade on one connection to the real daemon.

Its receive buffer is 4 KiB and it reads 1 KiB at a time, so the daemon's
answer to the GET is still waiting in the daemon when the upgrade is handled:
the script must arrive whole, then the handshake answer, then the WebSocket
must work (RFC 6455, alone and with a first frame in the same write, and hixie-76).
On loopback the kernel takes the whole answer at once, so what fails here when
the swap loses track of the unsent bytes is their order.
"""

from __future__ import annotations

import random
import socket
import time

import pytest

from tests.support.hixie_client import expected_answer, make_key
from tests.support.rawclient import MASK, handshake_request
from wsdaemon.proto.rfc6455 import OP_TEXT, encode_frame
from wsdaemon.transports.static import load_static_file

SCRIPT = load_static_file("wsdaemon.js")
GET_SCRIPT = b"GET /wsdaemon.js HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


class SlowClient:
    def __init__(self, host: str, port: int) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: the window
        self.sock.settimeout(10)
        self.sock.connect((host, port))
        self.buf = bytearray()

    def need(self, n: int) -> None:
        deadline = time.monotonic() + 20
        while len(self.buf) < n:
            assert time.monotonic() < deadline, f"only {len(self.buf)} of {n} bytes"
            data = self.sock.recv(1024)
            if not data:
                raise AssertionError(f"closed after {len(self.buf)} bytes: {bytes(self.buf[-200:])!r}")
            self.buf += data
            time.sleep(0.005)

    def take(self, n: int) -> bytes:
        self.need(n)
        data = bytes(self.buf[:n])
        del self.buf[:n]
        return data

    def take_head(self) -> bytes:
        while b"\r\n\r\n" not in self.buf:
            self.need(len(self.buf) + 1)
        return self.take(self.buf.index(b"\r\n\r\n") + 4)


def hixie76_request() -> tuple[bytes, bytes]:
    rng = random.Random(7)
    key1, number1 = make_key(rng)
    key2, number2 = make_key(rng)
    key3 = bytes(rng.getrandbits(8) for _ in range(8))
    head = (
        "GET /chat HTTP/1.1\r\nUpgrade: WebSocket\r\nConnection: Upgrade\r\nHost: 127.0.0.1\r\n"
        f"Origin: http://127.0.0.1\r\nSec-WebSocket-Key1: {key1}\r\nSec-WebSocket-Key2: {key2}\r\n\r\n"
    ).encode()
    return head + key3, expected_answer(number1, number2, key3)


FIRST_FRAME = encode_frame(OP_TEXT, b"with the head", mask=MASK)


@pytest.mark.parametrize("dialect", ["rfc6455", "rfc6455-with-a-frame", "hixie-76"])
def test_a_slow_reader_gets_the_whole_script_then_the_upgrade(echo_daemon, dialect):
    client = SlowClient(echo_daemon.host, echo_daemon.port)
    if dialect == "hixie-76":
        upgrade, answer = hixie76_request()
    else:
        upgrade, answer = handshake_request("/chat"), b""
        if dialect == "rfc6455-with-a-frame":
            upgrade += FIRST_FRAME
    client.sock.sendall(GET_SCRIPT * 2 + upgrade)
    for _ in range(2):
        head = client.take_head()
        assert head.startswith(b"HTTP/1.1 200 "), head
        assert f"Content-Length: {len(SCRIPT)}".encode() in head
        body = client.take(len(SCRIPT))
        assert body == SCRIPT, "the script arrived damaged"
    head = client.take_head()
    assert head.startswith(b"HTTP/1.1 101 "), head
    if dialect == "rfc6455-with-a-frame":
        assert client.take(15) == b"\x81\x0dwith the head"
    if dialect != "hixie-76":
        client.sock.sendall(encode_frame(OP_TEXT, b"after the swap", mask=MASK))
        assert client.take(16) == b"\x81\x0eafter the swap"
    else:
        assert client.take(16) == answer
        client.sock.sendall(b"\x00after the swap\xff")
        assert client.take(16) == b"\x00after the swap\xff"
    client.sock.close()
