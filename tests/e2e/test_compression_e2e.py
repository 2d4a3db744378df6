"""permessage-deflate against the real daemon: real clients negotiate it, limits hold, memory stays bounded.

Clients: python-websockets (its default offer), aiohttp (``compress=15``), Node's ``ws``
(``perMessageDeflate``, installed from npm into a folder of the tests', see
tests/support/node_ws.py) and a raw client of ours for what libraries will not do (exact
offers, RSV1 checks, a decompression bomb). Headless Chromium is in test_compression_browser.py.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import time
import zlib

import aiohttp
import pytest
import websockets

from tests.support.node_ws import CLIENT_JS, ensure_node_ws, node
from tests.support.rawclient import MASK, RawWebSocket
from wsdaemon.proto.rfc6455 import encode_frame

APP = "tests.support.deflate_app:app"
UNICODE = "привет, мир ✓ 🎮 ½ " * 8
DEFAULT_ANSWER = (
    "permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
    "server_max_window_bits=12; client_max_window_bits=12"
)
CHROME_OFFER = "permessage-deflate; client_max_window_bits"
FIREFOX_OFFER = "permessage-deflate"
RSV1 = 0x40


def game_state(n: int = 20) -> str:
    players = [{"id": i, "x": i * 7.5, "y": 1000 - i * 3.25, "hp": 100 - i} for i in range(n)]
    return json.dumps({"type": "state", "tick": 12345, "players": players})


MESSAGES = ["hi", "x" * 63, game_state(), UNICODE, os.urandom(3000), bytes(100_000), game_state(2000)]


def deflate_raw(data: bytes, wbits: int = 15, level: int = 6) -> bytes:
    c = zlib.compressobj(level, zlib.DEFLATED, -wbits)
    return (c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH))[:-4]


def inflate_raw(data: bytes) -> bytes:
    return zlib.decompressobj(-15).decompress(data + b"\x00\x00\xff\xff")


def compressed_frame(opcode: int, data: bytes, fin: bool = True) -> bytes:
    frame = bytearray(encode_frame(opcode, data, fin=fin, mask=MASK))
    frame[0] |= RSV1
    return bytes(frame)


def header_of(raw: RawWebSocket, name: str) -> str | None:
    for line in raw.head.decode("latin-1").split("\r\n")[1:]:
        key, _, value = line.partition(":")
        if key.strip().lower() == name.lower():
            return value.strip()
    return None


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


@pytest.fixture
def daemon(daemon_factory):
    return daemon_factory(app=APP)


# --- real clients ----------------------------------------------------------


def test_websockets_client_with_its_default_offer(daemon):
    async def run():
        async with websockets.connect(daemon.url, max_size=None) as ws:
            assert ws.response.headers["Sec-WebSocket-Extensions"] == DEFAULT_ANSWER
            await ws.send("compression?")
            agreed = json.loads(await ws.recv())
            assert agreed["header"] == DEFAULT_ANSWER and agreed["server_max_window_bits"] == 12
            for message in MESSAGES:
                await ws.send(message)
                assert await ws.recv() == message
            await ws.send(["frag", "mented ", UNICODE])  # one message in three frames
            assert await ws.recv() == "fragmented " + UNICODE

    asyncio.run(run())


def test_websockets_client_with_context_takeover(daemon_factory):
    d = daemon_factory("--compression-context-takeover", "on", app=APP)

    async def run():
        async with websockets.connect(d.url) as a, websockets.connect(d.url) as b:
            assert a.response.headers["Sec-WebSocket-Extensions"] == (
                "permessage-deflate; server_max_window_bits=12; client_max_window_bits=12"
            )
            # a's compressor keeps history; broadcasts in between must still decode on both
            for i in range(5):
                await a.send(game_state())
                assert await a.recv() == game_state()
                await b.send(f"broadcast:{game_state(i + 3)}")
                assert await a.recv() == game_state(i + 3)
                assert await b.recv() == game_state(i + 3)

    asyncio.run(run())


def test_aiohttp_client_compress_15(daemon):
    async def run():
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(daemon.url, compress=15, max_msg_size=0) as ws:
                assert ws.compress == 12  # the window we answered
                assert "permessage-deflate" in ws._response.headers["Sec-WebSocket-Extensions"]
                for message in MESSAGES:
                    if isinstance(message, str):
                        await ws.send_str(message)
                        assert (await ws.receive_str()) == message
                    else:
                        await ws.send_bytes(message)
                        assert (await ws.receive_bytes()) == message

    asyncio.run(run())


def test_node_ws_per_message_deflate(daemon):
    modules = ensure_node_ws()
    messages = [
        {"text": m} if isinstance(m, str) else {"binary": base64.b64encode(m).decode()} for m in MESSAGES
    ]
    result = subprocess.run(
        [node(), str(CLIENT_JS), daemon.url],
        input=json.dumps(messages),
        env={**os.environ, "NODE_PATH": str(modules)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert result.returncode == 0, (result.stderr, events[-3:])
    assert events[0] == {
        "event": "open",
        "extensions": "permessage-deflate",
        "header": DEFAULT_ANSWER,
        "params": {
            "server_no_context_takeover": True,
            "client_no_context_takeover": True,
            "server_max_window_bits": 12,
            "client_max_window_bits": 12,
        },
    }
    assert [e for e in events if e["event"] == "message"] == [{"event": "message", **m} for m in messages]
    assert events[-1] == {"event": "close", "code": 1000, "reason": "done"}


def test_compression_off_declines(daemon_factory):
    d = daemon_factory("--compression", "off", app=APP)

    async def run():
        async with websockets.connect(d.url) as ws:
            assert "Sec-WebSocket-Extensions" not in ws.response.headers
            await ws.send("compression?")
            assert await ws.recv() == "null"
            await ws.send(game_state())
            assert await ws.recv() == game_state()

    asyncio.run(run())
    raw = RawWebSocket(d.host, d.port, headers={"Sec-WebSocket-Extensions": CHROME_OFFER})
    assert header_of(raw, "Sec-WebSocket-Extensions") is None
    raw.sock.sendall(compressed_frame(0x1, deflate_raw(b"Hello")))
    frames, close = raw.recv_until_close()
    assert close == (1002, "reserved bits set without a negotiated extension")
    raw.close()


def test_application_refuses_per_connection(daemon):
    async def run():
        async with websockets.connect(daemon.url + "nocompress") as ws:
            assert "Sec-WebSocket-Extensions" not in ws.response.headers
            await ws.send("compression?")
            assert await ws.recv() == "null"

    asyncio.run(run())


# --- the wire, seen by a raw client ---------------------------------------------


@pytest.mark.parametrize(
    "offer, answer",
    [
        (CHROME_OFFER, DEFAULT_ANSWER),
        (
            FIREFOX_OFFER,
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
            "server_max_window_bits=12",
        ),
        ("x-webkit-deflate-frame, permessage-deflate; server_max_window_bits=10", None),
        ("permessage-deflate; client_max_window_bits=16, permessage-deflate", None),
        ("foo, bar; baz=1", "absent"),
    ],
)
def test_exact_offers(daemon, offer, answer):
    raw = RawWebSocket(daemon.host, daemon.port, headers={"Sec-WebSocket-Extensions": offer})
    assert raw.status == 101
    got = header_of(raw, "Sec-WebSocket-Extensions")
    if answer == "absent":
        assert got is None
    elif answer is None:  # the first offer we can honour, narrowed as the client asked
        assert got.startswith("permessage-deflate; server_no_context_takeover")
        assert "client_max_window_bits" not in got
    else:
        assert got == answer
    raw.close()


def test_rsv1_only_on_compressed_messages_of_the_minimum_size(daemon_factory):
    d = daemon_factory("--ping-interval", "0.5", app=APP)
    raw = RawWebSocket(d.host, d.port, headers={"Sec-WebSocket-Extensions": CHROME_OFFER})
    assert header_of(raw, "Sec-WebSocket-Extensions") == DEFAULT_ANSWER
    long_text = game_state().encode()

    raw.sock.sendall(compressed_frame(0x1, deflate_raw(long_text, 12)))
    opcode, payload = raw.recv_frame()
    assert (opcode, raw.last_b0 & 0x70) == (0x1, RSV1) and inflate_raw(payload) == long_text
    assert len(payload) < len(long_text) // 2

    raw.send_text("x" * 63)  # below --compression-min-size: plain
    opcode, payload = raw.recv_frame()
    assert (opcode, raw.last_b0 & 0x70, payload) == (0x1, 0, b"x" * 63)

    raw.send_text("plain:" + long_text.decode())  # compress=False
    assert raw.recv_frame() == (0x1, long_text) and raw.last_b0 & 0x70 == 0

    raw.send_text("force:ab")  # compress=True under the minimum
    opcode, payload = raw.recv_frame()
    assert raw.last_b0 & 0x70 == RSV1 and inflate_raw(payload) == b"ab"

    # control frames never compressed: our ping's pong, the server's keepalive ping, the close
    raw.send_frame(0x9, b"p" * 100)
    assert raw.recv_frame() == (0xA, b"p" * 100) and raw.last_b0 == 0x8A
    opcode, _ = raw.recv_frame(timeout=5)
    assert opcode == 0x9 and raw.last_b0 == 0x89
    raw.send_frame(0x8, b"\x03\xe8bye")
    assert raw.recv_frame() == (0x8, b"\x03\xe8bye") and raw.last_b0 == 0x88
    raw.close()


@pytest.mark.parametrize(
    "frames, code",
    [
        ([compressed_frame(0x1, b"\xff" * 21)], 1007),  # not deflate data
        ([compressed_frame(0x1, deflate_raw(b"bad \xc3\x28 utf8"))], 1007),
        ([compressed_frame(0x1, b"", fin=False), compressed_frame(0x0, b"")], 1002),  # RSV1 on CONT
        ([compressed_frame(0x9, b"ping")], 1002),  # RSV1 on a control frame
    ],
)
def test_bad_compressed_input_closes_with_its_code(daemon, frames, code):
    raw = RawWebSocket(daemon.host, daemon.port, headers={"Sec-WebSocket-Extensions": FIREFOX_OFFER})
    raw.sock.sendall(b"".join(frames))
    _, close = raw.recv_until_close()
    assert close is not None and close[0] == code, close
    raw.close()
    assert daemon.alive()


# --- broadcast: one compressed frame for all ----------------------------------


def test_broadcast_shares_one_compressed_frame(daemon):
    deflating = [
        RawWebSocket(daemon.host, daemon.port, headers={"Sec-WebSocket-Extensions": offer})
        for offer in (CHROME_OFFER, FIREFOX_OFFER, CHROME_OFFER)
    ]
    plain = RawWebSocket(daemon.host, daemon.port)
    assert header_of(plain, "Sec-WebSocket-Extensions") is None
    message = game_state()
    deflating[0].send_text(f"broadcast:{message}")
    received = []
    for raw in deflating:
        opcode, payload = raw.recv_frame()
        assert raw.last_b0 == 0xC1
        received.append(payload)
    assert received[0] == received[1] == received[2]  # the same bytes: compressed once
    assert inflate_raw(received[0]) == message.encode()
    assert plain.recv_frame() == (0x1, message.encode()) and plain.last_b0 == 0x81
    for raw in [*deflating, plain]:
        raw.close()


# --- bounded memory ------------------------------------------------------------


def test_decompression_bomb_closes_1009_with_bounded_rss(daemon_factory):
    d = daemon_factory("--max-message-size", "1M", app=APP)
    c = zlib.compressobj(9, zlib.DEFLATED, -15, 9)
    zeros = bytes(1 << 20)
    bomb = b"".join([c.compress(zeros) for _ in range(1024)] + [c.flush(zlib.Z_SYNC_FLUSH)])[:-4]
    assert len(bomb) < 1 << 20  # within the wire limit: only inflating can find it too big

    async def run():
        async with websockets.connect(d.url) as other:
            await other.send("before")
            assert await other.recv() == "before"
            before = rss_kib(d.proc.pid)
            raw = RawWebSocket(d.host, d.port, headers={"Sec-WebSocket-Extensions": FIREFOX_OFFER})
            started = time.monotonic()
            raw.sock.sendall(compressed_frame(0x2, bomb))
            _, close = raw.recv_until_close(timeout=30)
            elapsed = time.monotonic() - started
            grown = rss_kib(d.proc.pid) - before
            raw.close()
            assert close is not None and close[0] == 1009, close
            assert grown < 32 * 1024, f"RSS grew by {grown} KiB"
            assert elapsed < 20, elapsed  # stopped at the limit, not after inflating 1 GiB
            await other.send(game_state())
            assert await other.recv() == game_state()
            return grown

    grown = asyncio.run(run())
    print(f"bomb: daemon RSS grew by {grown} KiB")
    assert "message inflates past 1048576 bytes" in d.log()


def idle_cost_kib(d, count: int, offer: str | None) -> float:
    """RSS per connection of ``count`` raw clients that each exchanged two messages, then idle."""
    before = rss_kib(d.proc.pid)
    clients = []
    for _ in range(count):
        raw = RawWebSocket(d.host, d.port, headers={"Sec-WebSocket-Extensions": offer} if offer else None)
        for text in (game_state(), game_state(30)):
            if offer:
                raw.sock.sendall(compressed_frame(0x1, deflate_raw(text.encode())))
            else:
                raw.send_text(text)
            raw.recv_frame()
        clients.append(raw)
    clients[0].send_text("stats?")
    stats = json.loads(clients[0].recv_frame()[1])
    cost = (rss_kib(d.proc.pid) - before) / count
    return cost, stats, clients


@pytest.mark.timeout(240)
def test_idle_compressed_connections_hold_no_zlib_state(daemon_factory):
    count = 150
    d = daemon_factory("--log-level", "info", app=APP)
    # warm the daemon's allocator up first, so the measurement sees connections, not start-up
    _, _, warm = idle_cost_kib(d, 20, FIREFOX_OFFER)
    plain_cost, _, plain = idle_cost_kib(d, count, None)
    deflate_cost, stats, deflating = idle_cost_kib(d, count, FIREFOX_OFFER)
    assert stats == {"compressing": count + 20, "zlib_memory": 0}
    print(f"idle RSS per connection: plain {plain_cost:.1f} KiB, compressed {deflate_cost:.1f} KiB")
    assert deflate_cost < plain_cost + 4, (plain_cost, deflate_cost)
    for raw in [*warm, *plain, *deflating]:
        raw.close()

    d2 = daemon_factory("--log-level", "info", "--compression-context-takeover", "on", app=APP)
    _, _, warm = idle_cost_kib(d2, 20, FIREFOX_OFFER)
    takeover_cost, stats, held = idle_cost_kib(d2, count, FIREFOX_OFFER)
    # our compressor (12 bits, memLevel 5) and Firefox's 15-bit window decompressor, per connection
    assert stats["zlib_memory"] == (count + 20) * ((1 << 14) + (1 << 14) + (1 << 15) + 7 * 1024)
    print(f"with context takeover: {takeover_cost:.1f} KiB per connection")
    assert takeover_cost > deflate_cost + 20, (takeover_cost, deflate_cost)
    for raw in [*warm, *held]:
        raw.close()
