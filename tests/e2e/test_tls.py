"""TLS on the loop: wss:// and https:// with a certificate the test makes (trustme).

Round trips with the ``websockets`` client and urllib, Chromium as the
browser-style client, garbage and plain HTTP on the TLS port, the handshake
timeout, a slow consumer over TLS, a second TLS-only port, and the certificate
reloaded on SIGHUP.
"""

from __future__ import annotations

import asyncio
import os
import selectors
import signal
import socket
import ssl
import time
import urllib.request

import pytest
import trustme
import websocket
import websockets

from tests.e2e.test_slow_consumer import SIZE, FrameCounter, message
from tests.support.chromium import launch_chromium
from tests.support.daemon_process import free_port, wait_for_port
from tests.support.rawclient import MASK, handshake_request, read_head, read_until_closed, status_of
from wsdaemon.proto.rfc6455 import encode_frame


class Certs:
    """A test CA and server certificates issued by it, written where the daemon reads them."""

    def __init__(self, path):
        self.ca = trustme.CA()
        self.path = path
        self.server_pem = path / "server.pem"
        self.issue()

    def issue(self) -> bytes:
        """Write a fresh certificate (and key) to ``server.pem``; return its DER form."""
        cert = self.ca.issue_cert("localhost", "127.0.0.1")
        tmp = self.path / "server.pem.new"
        cert.private_key_and_cert_chain_pem.write_to_path(tmp)
        os.replace(tmp, self.server_pem)
        return ssl.PEM_cert_to_DER_cert(cert.cert_chain_pems[0].bytes().decode())

    def client_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context()
        self.ca.configure_trust(ctx)
        return ctx


@pytest.fixture
def certs(tmp_path):
    return Certs(tmp_path)


@pytest.fixture
def tls_daemon(daemon_factory, certs):
    return daemon_factory("--certfile", str(certs.server_pem), app="wsdaemon.apps.echo:app")


def wss(d) -> str:
    return f"wss://localhost:{d.port}/"


def served_certificate(port: int) -> bytes:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as s:
            return s.getpeercert(binary_form=True)


def test_wss_round_trip_with_websockets_and_https_with_urllib(tls_daemon, certs):
    ctx = certs.client_context()

    async def main():
        async with websockets.connect(wss(tls_daemon), ssl=ctx, max_size=None) as ws:
            await ws.send("héllo over TLS")
            assert await ws.recv() == "héllo over TLS"
            big = os.urandom(3 * 1024 * 1024)  # many TLS records, partial writes
            await ws.send(big)
            assert await ws.recv() == big
            for i in range(200):
                await ws.send(f"m{i}")
            for i in range(200):
                assert await ws.recv() == f"m{i}"

    asyncio.run(asyncio.wait_for(main(), 60))
    with urllib.request.urlopen(f"https://localhost:{tls_daemon.port}/status", context=ctx) as resp:
        assert resp.status == 200 and b'"pid"' in resp.read()
    assert "Traceback" not in tls_daemon.log()


def test_chromium_loads_the_page_over_https_and_talks_over_wss(tls_daemon):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = launch_chromium(pw, "--ignore-certificate-errors")
        try:
            page = browser.new_context(ignore_https_errors=True).new_page()
            page.goto(f"https://127.0.0.1:{tls_daemon.port}/", timeout=15000)
            assert "wsdaemon" in page.content()
            echoed = page.evaluate(
                """() => new Promise((resolve, reject) => {
                    const ws = new WebSocket('wss://' + location.host + '/');
                    ws.onopen = () => ws.send('from chromium ✓');
                    ws.onmessage = (e) => { ws.close(1000, 'done'); resolve(e.data); };
                    ws.onerror = () => reject(new Error('websocket error'));
                    setTimeout(() => reject(new Error('timeout')), 10000);
                })"""
            )
            assert echoed == "from chromium ✓"
        finally:
            browser.close()
    deadline = time.monotonic() + 10
    while "close rfc6455" not in tls_daemon.log() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "code=1000 reason='done'" in tls_daemon.log()


def test_garbage_and_plain_http_on_the_tls_port_leave_others_unaffected(tls_daemon, certs):
    ctx = certs.client_context()
    steady = websocket.create_connection(wss(tls_daemon), timeout=10, sslopt={"context": ctx})
    port = tls_daemon.port
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        answer = read_until_closed(s)
        assert status_of(answer) == 400 and b"speaks TLS" in answer
    for garbage in [
        b"\x01" + os.urandom(3000),
        b"\x16\x03\x01\x00\x10" + os.urandom(16),
        b"\x16" * 5000,
        b"\x00",
    ]:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            try:
                s.sendall(garbage)
                s.shutdown(socket.SHUT_WR)
            except OSError:
                pass  # already closed by the daemon
            assert not read_until_closed(s).startswith(b"HTTP/")
        steady.send("still fine")
        assert steady.recv() == "still fine"
    # TLS that is fine, then garbage inside the encrypted stream
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as s:
            s.sendall(b"\x00\x01 not http\r\n\r\n")
            assert status_of(read_until_closed(s)) == 400
    steady.close()
    log = tls_daemon.log()
    assert "not a TLS client" in log and "TLS handshake failed" in log
    assert "Traceback" not in log


def test_tls_handshake_has_the_handshake_timeout(daemon_factory, certs):
    d = daemon_factory(
        "--certfile", str(certs.server_pem), "--handshake-timeout", "1", app="wsdaemon.apps.echo:app"
    )
    ctx = certs.client_context()
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    try:
        ctx.wrap_bio(incoming, outgoing, server_hostname="localhost").do_handshake()
    except ssl.SSLWantReadError:
        hello = outgoing.read()
    with (
        socket.create_connection(("127.0.0.1", d.port), timeout=10) as silent,
        socket.create_connection(("127.0.0.1", d.port), timeout=10) as stalled,
    ):
        stalled.sendall(hello[:20])
        start = time.monotonic()
        assert read_until_closed(silent, timeout=10) == b""
        assert read_until_closed(stalled, timeout=10) == b""
        assert time.monotonic() - start < 5
    # TLS done, HTTP head never finished: the same budget covers both
    with socket.create_connection(("127.0.0.1", d.port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as s:
            s.sendall(b"GET / HTTP/1.1\r\n")
            assert status_of(read_until_closed(s, timeout=10)) == 408
    assert "TLS handshake not complete within the handshake timeout" in d.log()


def test_slow_consumer_over_tls_gets_whole_frames_then_1008(daemon_factory, certs):
    d = daemon_factory(
        "--certfile",
        str(certs.server_pem),
        "--max-write-buffer",
        str(128 * 1024),
        "--close-timeout",
        "60",
        app="wsdaemon.apps.broadcast:app",
    )
    ctx = certs.client_context()

    def connect(rcvbuf=None):
        raw = socket.socket()
        if rcvbuf:
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        raw.connect(("127.0.0.1", d.port))
        s = ctx.wrap_socket(raw, server_hostname="localhost")
        s.sendall(handshake_request())
        head, rest = read_head(s)
        assert head.startswith(b"HTTP/1.1 101")
        return s, rest

    slow, _ = connect(rcvbuf=4096)
    producer, rest = connect()
    counter = FrameCounter(rest)
    producer.setblocking(False)
    sel = selectors.DefaultSelector()
    sel.register(producer, selectors.EVENT_READ)
    sent = 0
    deadline = time.monotonic() + 60
    while "slow consumer" not in d.log():
        assert time.monotonic() < deadline, "the slow client was never dropped"
        while sent - counter.next_seq < 100:
            frame = encode_frame(0x1, message(sent), mask=MASK)
            producer.setblocking(True)
            producer.sendall(frame)
            producer.setblocking(False)
            sent += 1
        for _ in sel.select(0.05):
            try:
                while True:
                    counter.feed(producer.recv(1 << 20))
            except (ssl.SSLWantReadError, BlockingIOError):
                pass
    slow_counter = FrameCounter()
    slow.settimeout(10)
    while True:
        try:
            data = slow.recv(1 << 20)
        except ssl.SSLEOFError:
            break
        if not data:
            break
        slow_counter.feed(data)
    assert slow_counter.close == (1008, "slow consumer")
    assert not slow_counter.buf
    assert 0 < slow_counter.next_seq <= sent
    assert len(message(0)) == SIZE
    producer.close()
    slow.close()


def test_a_second_port_for_tls_beside_the_plain_one(daemon_factory, certs):
    tls_port = free_port()
    d = daemon_factory(
        "--certfile", str(certs.server_pem), "--tls-port", str(tls_port), app="wsdaemon.apps.echo:app"
    )
    wait_for_port("127.0.0.1", tls_port)
    plain = websocket.create_connection(d.url, timeout=10)
    secure = websocket.create_connection(
        f"wss://localhost:{tls_port}/", timeout=10, sslopt={"context": certs.client_context()}
    )
    for ws in (plain, secure):
        ws.send("both")
        assert ws.recv() == "both"
        ws.close()


def test_sighup_reloads_the_certificate_and_keeps_the_old_one_when_the_new_is_broken(daemon_factory, certs):
    d = daemon_factory("--certfile", str(certs.server_pem), app="wsdaemon.apps.echo:app")
    first = served_certificate(d.port)
    ctx = certs.client_context()
    kept = websocket.create_connection(wss(d), timeout=10, sslopt={"context": ctx})
    second = certs.issue()
    assert second != first
    d.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while served_certificate(d.port) != second:
        assert time.monotonic() < deadline, "certificate not reloaded"
        time.sleep(0.1)
    kept.send("old connection")
    assert kept.recv() == "old connection"
    certs.server_pem.write_text("not a certificate")
    d.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while "TLS certificate not reloaded" not in d.log():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert served_certificate(d.port) == second
    assert d.alive()
    kept.close()
