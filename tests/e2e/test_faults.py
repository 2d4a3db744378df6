"""Faults: resets, broken pipes, half-closes and clients vanishing mid-frame, mid-handshake and
mid-TLS-handshake, for RFC 6455, hixie-76/75 and long-polling, plain and over TLS. Each frees the
connection (the daemon's descriptors return to where they were) and calls ``on_close`` exactly once
for every connection that was opened (long-polling sessions when they expire).
"""

from __future__ import annotations

import json
import os
import socket
import ssl
import struct
import time

import pytest
import websocket

from tests.support.hixie_client import HixieClient
from tests.support.rawclient import MASK, handshake_request, read_head, read_until_closed
from wsdaemon.proto.rfc6455 import encode_frame

FAULT_APP = "tests.support.fault_app:app"
ROUNDS = 4


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def reset(sock: socket.socket) -> None:
    """Close with an RST instead of a FIN."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


class Target:
    """The daemon under test, plain or TLS, with a monitor connection asking the app for its counts."""

    def __init__(self, d, client_context: ssl.SSLContext | None):
        self.d = d
        self.ctx = client_context
        url = d.url.replace("ws://", "wss://") if client_context else d.url
        self.monitor = websocket.create_connection(url, timeout=10, sslopt={"context": client_context})

    def tcp(self) -> socket.socket:
        return socket.create_connection((self.d.host, self.d.port), timeout=10)

    def connect(self) -> socket.socket:
        s = self.tcp()
        return self.ctx.wrap_socket(s, server_hostname="localhost") if self.ctx else s

    def ws(self) -> socket.socket:
        s = self.connect()
        s.sendall(handshake_request())
        head, _ = read_head(s)
        assert head.startswith(b"HTTP/1.1 101"), head
        return s

    def hixie(self, draft: int) -> HixieClient:
        """An open hixie client (over TLS too: its socket is wrapped before the handshake)."""
        client = HixieClient(self.d.host, self.d.port, draft)
        if self.ctx:
            client.sock = self.ctx.wrap_socket(client.sock, server_hostname="localhost")
            client.scheme = "wss"
        client.handshake()
        return client

    def lp_open(self) -> str:
        s = self.connect()
        s.sendall(b"POST /lp/open HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        answer = read_until_closed(s)
        s.close()
        assert answer.startswith(b"HTTP/1.1 200"), answer
        return json.loads(answer.partition(b"\r\n\r\n")[2])["session"]

    def held_polls(self) -> int:
        s = self.connect()
        s.sendall(b"GET /status HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        answer = read_until_closed(s)
        s.close()
        return json.loads(answer.partition(b"\r\n\r\n")[2])["long_polling"]["held_polls"]

    def stats(self) -> dict:
        self.monitor.send("stats")
        return json.loads(self.monitor.recv())


def client_hello(ctx: ssl.SSLContext) -> bytes:
    """The bytes of a real TLS ClientHello, made without a socket."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(incoming, outgoing, server_hostname="localhost")
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


# --- each fault: does something rude, returns how many opened connections it made ---------


def reset_after_open(t: Target) -> int:
    reset(t.ws())
    return 1


def reset_while_the_server_writes(t: Target) -> int:  # EPIPE / ECONNRESET on send
    s = t.ws()
    s.sendall(encode_frame(0x1, b"big", mask=MASK))
    s.recv(1000)  # the 4 MiB answer has started
    reset(s)
    return 1


def half_close_after_open(t: Target) -> int:
    s = t.ws()
    if isinstance(s, ssl.SSLSocket):
        try:  # close_notify first; the daemon may answer it or just close
            s = s.unwrap()
        except (ssl.SSLEOFError, ConnectionError):
            s.close()
            return 1
    s.shutdown(socket.SHUT_WR)
    read_until_closed(s, timeout=10)
    s.close()
    return 1


def vanish_mid_frame(t: Target) -> int:
    s = t.ws()
    frame = encode_frame(0x1, b"x" * 1000, mask=MASK)
    s.sendall(frame[:300])
    s.close()
    return 1


def reset_mid_frame(t: Target) -> int:
    s = t.ws()
    s.sendall(encode_frame(0x2, b"y" * 70000, mask=MASK)[:5])
    reset(s)
    return 1


def close_frame_then_reset(t: Target) -> int:
    s = t.ws()
    s.sendall(encode_frame(0x8, b"\x03\xe8", mask=MASK))
    reset(s)
    return 1


def vanish_mid_handshake(t: Target) -> int:
    s = t.connect()
    s.sendall(handshake_request()[:40])
    s.close()
    s = t.connect()
    s.sendall(handshake_request()[:-3])
    reset(s)
    return 0


def vanish_mid_tls_handshake(t: Target) -> int:
    if t.ctx is None:
        return 0
    hello = client_hello(t.ctx)
    s = t.tcp()
    s.sendall(hello[: len(hello) // 2])
    s.close()
    s = t.tcp()
    s.sendall(hello)
    s.recv(100)  # the server's answer has begun: now vanish
    reset(s)
    s = t.tcp()
    s.sendall(hello[:3])
    reset(s)
    return 0


def hixie_reset_after_open(t: Target) -> int:
    reset(t.hixie(76).sock)
    reset(t.hixie(75).sock)
    return 2


def hixie_vanish_mid_frame(t: Target) -> int:
    c = t.hixie(76)
    c.send_raw(b"\x00half a fra")
    c.sock.close()
    c = t.hixie(75)
    c.send_raw(b"\x00\xe2\x98")  # and mid-character
    reset(c.sock)
    return 2


def hixie_vanish_before_key3(t: Target) -> int:
    c = HixieClient(t.d.host, t.d.port, 76)
    if t.ctx:
        c.sock = t.ctx.wrap_socket(c.sock, server_hostname="localhost")
    c.send_raw(c.request_head() + c.key3[:3])
    reset(c.sock)
    return 0


def hixie_reset_while_the_server_writes(t: Target) -> int:
    c = t.hixie(76)
    c.send_text("big")
    c.sock.recv(100)
    reset(c.sock)
    return 1


def long_polling_vanishing(t: Target) -> int:
    """A held poll reset, a post cut mid-body, a session left alone: each session expires once."""
    held = t.lp_open()
    before = t.held_polls()
    s = t.connect()
    s.sendall(f"GET /lp/{held}/poll?ack=0 HTTP/1.1\r\nHost: a\r\n\r\n".encode())
    deadline = time.monotonic() + 10
    while t.held_polls() == before:  # nothing queued: the poll is held
        assert time.monotonic() < deadline
        time.sleep(0.02)
    reset(s)
    cut = t.lp_open()
    s = t.connect()
    s.sendall(f'POST /lp/{cut}/send HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\n{{"mess'.encode())
    s.close()
    t.lp_open()  # never polled
    return 3


FAULTS = [
    reset_after_open,
    reset_while_the_server_writes,
    half_close_after_open,
    vanish_mid_frame,
    reset_mid_frame,
    close_frame_then_reset,
    vanish_mid_handshake,
    vanish_mid_tls_handshake,
    hixie_reset_after_open,
    hixie_vanish_mid_frame,
    hixie_vanish_before_key3,
    hixie_reset_while_the_server_writes,
    long_polling_vanishing,
]


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("localhost", "127.0.0.1")
    path = tmp_path_factory.mktemp("certs")
    cert.private_key_and_cert_chain_pem.write_to_path(path / "server.pem")
    client = ssl.create_default_context()
    ca.configure_trust(client)
    return path / "server.pem", client


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
def test_every_fault_frees_the_connection_and_closes_once(daemon_factory, certs, tls):
    args = ["--ping-interval", "0", "--handshake-timeout", "30", "--longpoll-expire", "1"]
    if tls:
        args += ["--certfile", str(certs[0])]
    d = daemon_factory(*args, app=FAULT_APP)
    t = Target(d, certs[1] if tls else None)
    pid = d.proc.pid
    assert t.stats()["open"] == 1
    baseline = open_fds(pid)
    opened = 0
    for _ in range(ROUNDS):
        for fault in FAULTS:
            opened += fault(t)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        stats = t.stats()
        if stats["close"] == opened and open_fds(pid) == baseline:
            break
        time.sleep(0.1)
    assert stats["open"] == opened + 1, stats
    assert stats["close"] == opened, stats
    assert stats["twice"] == 0
    assert stats["connections"] == 1  # the monitor
    assert open_fds(pid) == baseline, "descriptors leaked"
    t.monitor.close()
    log = d.log()
    assert "Traceback" not in log and "unhandled error" not in log, log[-2000:]
