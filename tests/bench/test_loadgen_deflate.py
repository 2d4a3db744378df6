"""bench/loadgen's permessage-deflate mode against real servers, about a second each.

The compressed benchmark profiles (z, zb, zi) are only as good as the load
generator's RFC 7692 client: it must negotiate, send frames the server inflates,
inflate and check every echo, and fail loudly when compression is declined.
Checked against the daemon (no context takeover by default, and with takeover)
and against python-websockets (context takeover, 12-bit windows).
"""

import json
import subprocess
import sys

import pytest

from tests.support.daemon_process import REPO, free_port, wait_for_port

BENCH = REPO / "bench"
SIZE = 200


@pytest.fixture(scope="module")
def loadgen(tmp_path_factory):
    """bench/loadgen.c built fresh (gcc, zlib) into a temporary folder."""
    out = tmp_path_factory.mktemp("loadgen") / "loadgen"
    subprocess.run(
        ["gcc", "-O2", "-Wall", "-Wextra", "-Werror", "-o", str(out), str(BENCH / "loadgen.c"), "-lz"],
        check=True,
    )
    return out


def run_loadgen(loadgen, port: int, *args: str) -> dict:
    cmd = [str(loadgen), "--port", str(port), "--size", str(SIZE), "--duration", "1", "--warmup", "0.2"]
    out = subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=60)
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    assert lines, f"no result (rc {out.returncode}): {out.stderr}"
    return json.loads(lines[-1])


def assert_compressed_echo(result: dict, min_messages: int = 100) -> None:
    assert "error" not in result, result
    for fault in ("protocol_errors", "size_errors", "content_errors", "closed_by_server", "handshake_errors"):
        assert result[fault] == 0, (fault, result)
    assert result["deflate_answer"].startswith("permessage-deflate"), result
    assert result["messages"] >= min_messages, result
    assert result["compressed_in"] == result["messages"], result  # 200 B is above every threshold
    # JSON game states compress: fewer bytes on the wire than the 200-byte payload, both ways
    assert result["wire_in_per_msg"] < SIZE and result["wire_out_per_msg"] < SIZE, result


def test_pool_is_json_of_the_size_asked_for(loadgen):
    out = subprocess.run([str(loadgen), "--dump-pool", "--size", str(SIZE)], capture_output=True, text=True)
    messages = out.stdout.splitlines()
    assert len(messages) == 256
    assert len(set(messages)) == 256
    for i, m in enumerate(messages):
        assert len(m) == SIZE
        assert json.loads(m)["id"] == f"{i:03d}"


@pytest.mark.parametrize("takeover", ["off", "on"])
def test_echo_compressed_by_the_daemon(loadgen, daemon_factory, takeover):
    d = daemon_factory("--compression", "on", "--compression-context-takeover", takeover)
    result = run_loadgen(loadgen, d.port, "--mode", "echo", "--conns", "20", "--inflight", "2", "--deflate")
    assert_compressed_echo(result)
    assert ("no_context_takeover" in result["deflate_answer"]) == (takeover == "off")


def test_broadcast_compressed_by_the_daemon(loadgen, daemon_factory):
    d = daemon_factory("--compression", "on", app="wsdaemon.apps.broadcast:app")
    result = run_loadgen(
        loadgen, d.port, "--mode", "broadcast", "--conns", "20", "--inflight", "5", "--deflate"
    )
    assert_compressed_echo(result)
    assert result["sent"] > 0 and result["messages"] >= 19 * result["sent"] * 0.9, result


def test_echo_compressed_by_websockets(loadgen):
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, str(BENCH / "peers" / "websockets_server.py"), "--port", str(port), "--deflate"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port("127.0.0.1", port, proc=server)
        result = run_loadgen(loadgen, port, "--mode", "echo", "--conns", "20", "--inflight", "2", "--deflate")
    finally:
        server.terminate()
        server.wait(10)
    assert_compressed_echo(result, min_messages=50)
    assert "client_max_window_bits=12" in result["deflate_answer"]
    # context takeover: later messages reuse the earlier ones' strings
    assert result["wire_in_per_msg"] < SIZE / 2, result


def test_declined_compression_fails_the_run(loadgen, daemon_factory):
    d = daemon_factory("--compression", "off")
    result = run_loadgen(loadgen, d.port, "--mode", "echo", "--conns", "5", "--deflate")
    assert "error" in result and result["deflate_declined"] == 5, result


def test_uncompressed_path_offers_nothing(loadgen, daemon_factory):
    d = daemon_factory("--compression", "on")
    result = run_loadgen(loadgen, d.port, "--mode", "echo", "--conns", "5")
    assert "error" not in result and result["protocol_errors"] == 0 and result["messages"] > 0, result
    assert result["deflate_answer"] == "" and result["compressed_in"] == 0
    assert result["wire_in_per_msg"] == SIZE + 4 and result["wire_out_per_msg"] == SIZE + 8
