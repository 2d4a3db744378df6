"""Our hixie test clients against an independent server: Debian's faye-websocket.

If ``hixie_client`` passes here, a failure of the same client against wsdaemon
is wsdaemon's. node and node-faye-websocket are installed by
``tests/install-deps.sh``; their absence fails these tests (it is not a skip).
"""

from __future__ import annotations

import json
import os
import selectors
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.hixie_client import CLOSED, HixieClient, expected_answer

NODE_PATH = "/usr/share/nodejs"
SERVER_JS = Path(__file__).parents[1] / "support" / "faye_hixie_server.js"


@pytest.fixture(scope="module")
def faye():
    node = shutil.which("node") or shutil.which("nodejs")
    if node is None:
        pytest.fail("node not found: run tests/install-deps.sh (Debian package node-faye-websocket)")
    if not Path(NODE_PATH, "faye-websocket").is_dir():
        pytest.fail(f"faye-websocket not in {NODE_PATH}: run tests/install-deps.sh")
    env = dict(os.environ, NODE_PATH=NODE_PATH)
    proc = subprocess.Popen([node, str(SERVER_JS)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        with selectors.DefaultSelector() as sel:
            sel.register(proc.stdout, selectors.EVENT_READ)
            if not sel.select(timeout=20):
                pytest.fail("faye server did not start within 20 s")
        line = proc.stdout.readline()
        if not line:
            pytest.fail(f"faye server exited: {proc.stderr.read().decode(errors='replace')}")
        yield "127.0.0.1", json.loads(line)["port"]
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()


def client(faye, draft, **kwargs) -> HixieClient:
    host, port = faye
    return HixieClient(host, port, draft, **kwargs)


def test_faye_hixie76_handshake_with_key3_in_pieces(faye):
    for parts in ([], [3], [1, 2, 7]):
        with client(faye, 76, path="/chat?room=1") as c:
            c.handshake(key3_parts=parts, strict=False)  # checks faye's 16-byte answer
            c.send_text("héllo ☃ 𝄞")
            assert c.recv() == "héllo ☃ 𝄞"
            c.close_handshake()


def test_faye_hixie76_draft_example(faye):
    key1, key2, key3 = "4 @1  46546xW%0l 1 5", "12998 5 Y3 1  .P00", b"^n:ds[4U"
    assert expected_answer(829309203, 259970620, key3) == b"8jKS'y:G*Co,Wxa-"
    with client(faye, 76, path="/demo", key1=key1, key2=key2, key3=key3) as c:
        c.handshake()
        assert c.headers["sec-websocket-location"].endswith("/demo")


def test_faye_hixie76_frames_glued_to_key3_and_split(faye):
    with client(faye, 76) as c:
        c.handshake(glue=b"\x00one\xff\x00two\xff")
        assert [c.recv(), c.recv()] == ["one", "two"]
        data = b"\x00h\xc3\xa9llo\xff\x00second\xff"
        for cut in range(1, len(data)):
            c.send_raw(data[:cut])
            c.send_raw(data[cut:])
            assert [c.recv(), c.recv()] == ["héllo", "second"], cut
        messages = [f"m{i} ☃" for i in range(100)]
        c.send_raw(b"".join(b"\x00" + m.encode() + b"\xff" for m in messages))
        assert [c.recv() for _ in messages] == messages


def test_faye_hixie76_server_closes_first(faye):
    with client(faye, 76) as c:
        c.handshake()
        c.send_text("close-me")
        assert c.recv() is CLOSED
        c.answer_close()


def test_faye_hixie75(faye):
    with client(faye, 75, path="/old") as c:
        c.handshake()  # checks the unprefixed WebSocket-Origin / WebSocket-Location
        c.send_text("héllo ☃")
        assert c.recv() == "héllo ☃"
        c.send_raw(b"\x00a\xff\x00b\xff")
        assert [c.recv(), c.recv()] == ["a", "b"]
        c.send_text("close-me")
        assert c.recv() is CLOSED  # -75: the server just closes TCP
