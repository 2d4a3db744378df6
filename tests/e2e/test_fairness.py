"""Fair under hostile load, against the daemon process: the read budget, the rate limits, and a
peer given up on costing nothing. The figures (normal clients' round trips beside each hostile
pattern) are in bench/hostile.py, not here; these check behaviour and counts."""

from __future__ import annotations

import asyncio
import socket
import threading
import time

import pytest
import websockets

from tests.support.metrics_scrape import scrape
from wsdaemon.proto.rfc6455 import OP_PING, OP_TEXT, encode_frame

MASK = b"\x01\x02\x03\x04"
ECHO = "wsdaemon.apps.echo:app"


def raw_client(port: int, rcvbuf: int | None = None) -> socket.socket:
    sock = socket.socket()
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.connect(("127.0.0.1", port))
    sock.sendall(
        b"GET / HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock


def sample(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def echo_once(url: str, text: str = "hello") -> None:
    async with websockets.connect(url) as ws:
        await ws.send(text)
        assert await asyncio.wait_for(ws.recv(), 10) == text


def test_a_flood_of_tiny_frames_is_parsed_in_slices_and_every_echo_arrives(daemon_factory):
    d = daemon_factory("--read-budget", "1k", app=ECHO)
    before = scrape(d.http_url)
    count = 20_000
    payloads = [f"{i % 100:02d}".encode() for i in range(count)]
    flood = b"".join(encode_frame(OP_TEXT, p, mask=MASK) for p in payloads)  # 8 bytes each
    expected = b"".join(encode_frame(OP_TEXT, p) for p in payloads)  # the echoes, unmasked
    sock = raw_client(d.port)
    got = bytearray()

    def read() -> None:
        sock.settimeout(20)
        while len(got) < len(expected):
            data = sock.recv(1 << 16)
            if not data:
                return
            got.extend(data)

    reader = threading.Thread(target=read)
    reader.start()
    sock.sendall(flood)  # one burst: about 160 KiB, far more than one turn's budget
    asyncio.run(echo_once(d.url))  # another client is served meanwhile
    reader.join(30)
    assert bytes(got) == expected  # every echo, in order, nothing torn
    after = scrape(d.http_url)
    deferred = sample(after, "wsdaemon_read_budget_deferred_total") - sample(
        before, "wsdaemon_read_budget_deferred_total"
    )
    assert deferred >= 10, deferred  # the reads were spread over later turns
    sock.close()
    assert "Traceback" not in d.log()


def test_a_ping_flood_is_closed_with_1008_and_counted(daemon_factory):
    d = daemon_factory("--max-control-frames-per-second", "100", app=ECHO)

    async def scenario() -> None:
        async with websockets.connect(d.url) as bystander:
            flooder = await websockets.connect(d.url)
            for n in range(150):  # in well under a second
                await flooder.ping(str(n).encode())
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await asyncio.wait_for(flooder.recv(), 10)
            assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (1008, "control frame rate limit")
            await bystander.send("still here")
            assert await asyncio.wait_for(bystander.recv(), 10) == "still here"
            await bystander.ping()  # a few pings are fine

    asyncio.run(scenario())
    samples = scrape(d.http_url)
    assert sample(samples, "wsdaemon_rate_limited_total", what="control_frames", action="closed") == 1


def test_message_rate_limit_closes_with_1008(daemon_factory):
    d = daemon_factory("--max-messages-per-second", "50", app=ECHO)

    async def scenario() -> None:
        async with websockets.connect(d.url) as ws:
            for n in range(100):
                await ws.send(str(n))
            with pytest.raises(websockets.ConnectionClosed) as closed:
                while True:
                    await asyncio.wait_for(ws.recv(), 10)
            assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (1008, "message rate limit")
        await echo_once(d.url)  # a new connection starts with its own allowance

    asyncio.run(scenario())
    samples = scrape(d.http_url)
    assert sample(samples, "wsdaemon_rate_limited_total", what="messages", action="closed") == 1


def test_message_rate_limit_can_drop_the_excess_instead(daemon_factory):
    d = daemon_factory("--max-messages-per-second", "50", "--rate-limit-action", "drop", app=ECHO)

    async def scenario() -> list[str]:
        async with websockets.connect(d.url) as ws:
            for n in range(100):  # in one burst, within the first second of the connection
                await ws.send(str(n))
            got = []
            try:
                while True:
                    got.append(await asyncio.wait_for(ws.recv(), 1.5))
            except TimeoutError:
                pass
            await asyncio.sleep(1.0)  # a new second: a new allowance
            await ws.send("later")
            assert await asyncio.wait_for(ws.recv(), 10) == "later"
            return got

    got = asyncio.run(scenario())
    assert got == [str(n) for n in range(50)]  # the first 50, in order; the rest dropped
    samples = scrape(d.http_url)
    assert sample(samples, "wsdaemon_rate_limited_total", what="messages", action="dropped") == 50
    assert sample(samples, "wsdaemon_rate_limited_total", what="messages", action="closed") == 0


def test_a_peer_that_never_reads_is_dropped_after_the_grace_not_the_close_timeout(daemon_factory):
    d = daemon_factory(
        "--max-write-buffer", "64k", "--max-control-frames-per-second", "0",
        "--close-timeout", "30", "--drop-grace", "0.5", app=ECHO,
    )  # fmt: skip
    sock = raw_client(d.port, rcvbuf=4096)
    pings = encode_frame(OP_PING, b"p" * 125, mask=MASK) * 100
    sock.settimeout(2)
    start = time.monotonic()
    dropped_after = None
    while time.monotonic() - start < 20:  # it never reads the pongs
        try:
            sock.sendall(pings)
        except TimeoutError:
            continue
        except OSError:  # reset or broken pipe: the daemon dropped us
            dropped_after = time.monotonic() - start
            break
    sock.close()
    log = d.wait_for_log("slow consumer")
    assert dropped_after is not None, "still connected after 20 s: the daemon kept reading"
    # well before --close-timeout: the 1008, then the 0.5 s grace (the kernel buffers take a while)
    assert dropped_after < 10, dropped_after
    assert "Traceback" not in log
    asyncio.run(echo_once(d.url))
