"""RFC 6455 end to end: the real daemon process and clients we did not write."""

import asyncio
import os
import socket
import struct
import time

import aiohttp
import pytest
import websocket
import websockets

from tests.support.e2e_app import chunk_bytes
from wsdaemon.proto.rfc6455 import encode_frame

E2E = "tests.support.e2e_app:app"


@pytest.fixture
def e2e(daemon_factory):
    return daemon_factory(app=E2E)


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 60))


# --- websockets (asyncio) ---------------------------------------------------


def test_websockets_text_binary_large_and_fragmented(e2e):
    async def main():
        async with websockets.connect(e2e.url, max_size=None, compression=None) as ws:
            await ws.send("héllo ☃")
            assert await ws.recv() == "héllo ☃"
            await ws.send(b"\x00\xffbin")
            assert await ws.recv() == b"\x00\xffbin"
            big = os.urandom(1024 * 1024)
            await ws.send(big)
            assert await ws.recv() == big
            await ws.send(["frag", "mén", "ted"])
            assert await ws.recv() == "fragménted"
            await ws.send([b"a", b"b" * 70000])
            assert await ws.recv() == b"a" + b"b" * 70000
            pong = await ws.ping(b"are you there")
            await asyncio.wait_for(pong, 5)

    run(main())


def test_websockets_client_close_code_and_reason_reach_the_server_log(e2e):
    async def main():
        ws = await websockets.connect(e2e.url)
        await ws.close(4001, "game over")
        assert ws.close_code == 4001
        assert ws.close_reason == "game over"

    run(main())
    deadline = time.monotonic() + 5
    while "code=4001 reason='game over'" not in e2e.log() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "code=4001 reason='game over'" in e2e.log()


def test_server_initiated_close_with_code_and_reason(e2e):
    async def main():
        async with websockets.connect(e2e.url) as ws:
            await ws.send("close:4321:see you")
            with pytest.raises(websockets.ConnectionClosed):
                await ws.recv()
            assert ws.close_code == 4321
            assert ws.close_reason == "see you"

    run(main())


def test_subprotocol_negotiation(e2e):
    async def main():
        async with websockets.connect(e2e.url + "hello", subprotocols=["nope", "chat.v1", "chat.v2"]) as ws:
            assert ws.subprotocol == "chat.v1"
            assert await ws.recv() == "hello chat.v1"
        async with websockets.connect(e2e.url + "hello", subprotocols=["nope"]) as ws:
            assert ws.subprotocol is None
            assert await ws.recv() == "hello None"

    run(main())


def test_request_details_are_visible_to_the_application(e2e):
    async def main():
        async with websockets.connect(
            e2e.url + "room?id=7",
            additional_headers={"Cookie": "session=s3cr3t"},
            user_agent_header="pytest-ua",
        ) as ws:
            await ws.send("request")
            info = eval(await ws.recv())  # noqa: S307 - our own app's repr
            assert info == {
                "path": "/room",
                "query": {"id": ["7"]},
                "cookie": "s3cr3t",
                "agent": "pytest-ua",
                "remote": "127.0.0.1",
                "protocol": "rfc6455",
                "subprotocol": None,
            }

    run(main())


def test_message_over_the_limit_closes_with_1009(daemon_factory):
    d = daemon_factory("--max-message-size", "1000", app=E2E)

    async def main():
        async with websockets.connect(d.url, max_size=None) as ws:
            await ws.send(b"x" * 1000)
            assert await ws.recv() == b"x" * 1000
            await ws.send(b"x" * 1001)
            with pytest.raises(websockets.ConnectionClosedError):
                await ws.recv()
            assert ws.close_code == 1009

    run(main())


# --- websocket-client (synchronous) -----------------------------------------


def test_websocket_client_text_binary_ping_and_close(e2e):
    ws = websocket.create_connection(e2e.url, timeout=10)
    ws.send("plain")
    assert ws.recv() == "plain"
    ws.send_binary(b"\x01\x02")
    assert ws.recv() == b"\x01\x02"
    ws.ping(b"hi")
    opcode, frame = ws.recv_data_frame(control_frame=True)
    assert opcode == websocket.ABNF.OPCODE_PONG and frame.data == b"hi"
    ws.send_frame(websocket.ABNF.create_frame("part1-", websocket.ABNF.OPCODE_TEXT, fin=0))
    ws.send_frame(websocket.ABNF.create_frame("part2", websocket.ABNF.OPCODE_CONT, fin=1))
    assert ws.recv() == "part1-part2"
    ws.send_close(3001, b"bye")
    opcode, frame = ws.recv_data_frame(control_frame=True)
    assert opcode == websocket.ABNF.OPCODE_CLOSE
    assert struct.unpack("!H", frame.data[:2])[0] == 3001
    ws.shutdown()


def test_callback_exception_closes_only_that_connection_with_1011(e2e):
    others = [websocket.create_connection(e2e.url, timeout=10) for _ in range(3)]
    victim = websocket.create_connection(e2e.url, timeout=10)
    victim.send("raise")
    opcode, frame = victim.recv_data_frame(control_frame=True)
    assert opcode == websocket.ABNF.OPCODE_CLOSE
    assert struct.unpack("!H", frame.data[:2])[0] == 1011
    for i, ws in enumerate(others):
        ws.send(f"still here {i}")
        assert ws.recv() == f"still here {i}"
        ws.close()
    assert "RuntimeError: application bug on purpose" in e2e.log()
    assert e2e.alive()


# --- aiohttp ------------------------------------------------------------------


def test_aiohttp_client(e2e):
    async def main():
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(e2e.url, protocols=("chat.v2",), max_msg_size=0) as ws:
                assert ws.protocol == "chat.v2"
                await ws.send_str("from aiohttp")
                assert (await ws.receive()).data == "from aiohttp"
                big = os.urandom(1024 * 1024)
                await ws.send_bytes(big)
                assert (await ws.receive()).data == big
                await ws.close(code=4002, message=b"aiohttp done")
                assert ws.close_code == 4002

    run(main())


# --- slow reader: nothing lost ---------------------------------------------------


def test_slow_reader_gets_all_50_mib_in_order(e2e):
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32768)
    sock.connect(("127.0.0.1", e2e.port))
    ws = websocket.WebSocket(sockopt=(), skip_utf8_validation=True)
    ws.connect(e2e.url, socket=sock, timeout=30)
    ws.send("stream:50")
    for index in range(50):
        if index < 10:
            time.sleep(0.1)  # read slowly at first, so the server's buffers fill up
        data = ws.recv()
        assert data == chunk_bytes(index), f"block {index} differs"
    done = ws.recv()
    assert done.startswith("done max_buffered=")
    assert int(done.split("=")[1]) > 0, (
        "the server never had to buffer: the test did not exercise partial writes"
    )
    ws.close()


# --- raw clients for what libraries will not send ------------------------------


def raw_handshake(port: int, extra: bytes = b"", version: bytes = b"13") -> tuple[socket.socket, bytes]:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(
        b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: "
        + version
        + b"\r\n\r\n"
        + extra
    )
    return sock, read_until_closed_or(sock, b"\r\n\r\n")


def read_until_closed_or(sock: socket.socket, marker: bytes, limit: float = 10) -> bytes:
    data = b""
    deadline = time.monotonic() + limit
    while marker not in data and time.monotonic() < deadline:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def test_unknown_version_gets_426_with_supported_version(e2e):
    sock, head = raw_handshake(e2e.port, version=b"7")
    assert head.startswith(b"HTTP/1.1 426 ")
    assert b"Sec-WebSocket-Version: 13\r\n" in head
    sock.close()


def test_version_8_is_accepted(e2e):
    sock, head = raw_handshake(e2e.port, version=b"8")
    assert head.startswith(b"HTTP/1.1 101 ")
    sock.close()


def test_first_frame_glued_to_the_handshake_is_not_lost(e2e):
    frames = encode_frame(1, b"glued", mask=b"abcd") + encode_frame(1, b"twice", mask=b"dcba")
    sock, data = raw_handshake(e2e.port, extra=frames)
    head, _, rest = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101 ")
    rest += read_until_closed_or(sock, b"twice") if b"twice" not in rest else b""
    assert rest == b"\x81\x05glued\x81\x05twice"
    sock.close()


def test_unmasked_frame_is_a_protocol_error_with_1002(e2e):
    sock, data = raw_handshake(e2e.port, extra=encode_frame(1, b"unmasked"))
    data = data.partition(b"\r\n\r\n")[2]
    while len(data) < 4:
        chunk = sock.recv(1024)
        assert chunk, "connection closed without a close frame"
        data += chunk
    assert data[:1] == b"\x88"
    assert struct.unpack("!H", data[2:4])[0] == 1002
    sock.close()


def test_garbage_request_gets_400_and_others_are_unaffected(e2e):
    ws = websocket.create_connection(e2e.url, timeout=10)
    bad = socket.create_connection(("127.0.0.1", e2e.port), timeout=10)
    bad.sendall(b"\x16\x03\x01 not http at all\r\n\r\n")
    reply = read_until_closed_or(bad, b"\n\n")
    assert reply.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    ws.send("fine")
    assert ws.recv() == "fine"
    ws.close()


def test_server_pings_idle_clients_and_drops_silent_ones(daemon_factory):
    d = daemon_factory("--ping-interval", "0.5", "--ping-timeout", "1", app=E2E)
    sock, head = raw_handshake(d.port)
    assert head.startswith(b"HTTP/1.1 101 ")
    sock.settimeout(5)
    first = sock.recv(2)
    assert first[0] == 0x89, "expected a ping from the server"
    start = time.monotonic()
    data = b""
    while True:  # never answer: the server must give up on us
        chunk = sock.recv(1024)
        if not chunk:
            break
        data += chunk
    assert time.monotonic() - start < 5

    async def answering_client():
        # websockets answers pings in the background while we sleep
        async with websockets.connect(d.url, ping_interval=None) as ws:
            await asyncio.sleep(2.5)
            await ws.send("alive")
            assert await ws.recv() == "alive"

    run(answering_client())


def test_sigterm_closes_clients_with_1001(daemon_factory):
    d = daemon_factory(app=E2E)
    ws = websocket.create_connection(d.url, timeout=10)
    ws.send("x")
    assert ws.recv() == "x"
    d.proc.terminate()
    opcode, frame = ws.recv_data_frame(control_frame=True)
    assert opcode == websocket.ABNF.OPCODE_CLOSE
    assert struct.unpack("!H", frame.data[:2])[0] == 1001
    assert frame.data[2:] == b"server shutting down"
    ws.send_close()
    assert d.proc.wait(10) == 0


def test_pure_python_masking_path_end_to_end(daemon_factory):
    d = daemon_factory(app=E2E, env={"WSDAEMON_PURE_PYTHON": "1"})
    d.wait_for_log("masking in pure Python")
    ws = websocket.create_connection(d.url, timeout=10)
    big = os.urandom(1024 * 1024 + 3)
    ws.send_binary(big)
    assert ws.recv() == big
    ws.send("ünïcode")
    assert ws.recv() == "ünïcode"
    ws.close()


def test_c_accelerator_is_built_and_used(echo_daemon):
    """The package builds its optional C extension here; losing it silently would cost 40x on masking."""
    echo_daemon.wait_for_log("masking in C")
