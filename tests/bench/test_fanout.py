"""bench/fanout.c, the cross-node load of bench/cluster.py, against real nodes and a real redis-server.

Its figures are only worth something if every member receives every publication, in order
(the latency of a delivery is read from the send time of the publication with its rank): the
load generator counts what did not arrive after the publisher stopped (``lost``), messages
beyond what was sent (``out_of_range``), and connections closed or failed. Each case runs for
about two seconds: two wsdaemon nodes, then two python-socketio nodes with its Redis manager
(``--sio``, the Socket.IO framing).
"""

import json
import socket
import subprocess
import sys

import pytest

from tests.support.daemon_process import REPO, free_port
from tests.support.lp_helpers import wait_for

BENCH = REPO / "bench"


@pytest.fixture(scope="module")
def fanout(tmp_path_factory):
    out = tmp_path_factory.mktemp("fanout") / "fanout"
    subprocess.run(
        ["gcc", "-O2", "-Wall", "-Wextra", "-Werror", "-o", str(out), str(BENCH / "fanout.c")], check=True
    )
    return out


def run_fanout(fanout, ports: list[int], *args: str) -> dict:
    cmd = [
        str(fanout),
        "--ports",
        ",".join(map(str, ports)),
        "--conns",
        "40",
        "--duration",
        "1",
        "--warmup",
        "0.2",
    ]
    out = subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=60)
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    assert lines, f"no result (rc {out.returncode}): {out.stderr}"
    result = json.loads(lines[-1])
    assert "error" not in result, (result, out.stderr)
    return result


def assert_everything_arrived(result: dict, paced: float | None = None) -> None:
    for fault in ("lost", "dead", "errors", "closed_by_server", "out_of_range"):
        assert result[fault] == 0, (fault, result)
    assert result["sent"] > 0 and result["p99_ms"] > 0, result
    # Deliveries counted while measuring: every member got each publication of that time.
    expected = result["publications_per_s"] * result["conns"]
    assert abs(result["deliveries_per_s"] - expected) <= 0.1 * expected, result
    if paced:
        assert abs(result["publications_per_s"] - paced) <= 0.1 * paced, result


def test_two_wsdaemon_nodes(fanout, daemon_factory, redis_server):
    nodes = [daemon_factory("--broker", redis_server.url, app="wsdaemon.apps.room:app") for _ in range(2)]
    ports = [d.port for d in nodes]
    assert_everything_arrived(run_fanout(fanout, ports, "--inflight", "8"))
    assert_everything_arrived(run_fanout(fanout, ports, "--rate", "200"), paced=200)


class SocketIoNode:
    def __init__(self, redis_url: str) -> None:
        self.port = free_port()
        script = str(BENCH / "peers" / "socketio_server.py")
        cmd = [sys.executable, script, "--port", str(self.port), "--redis", redis_url]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def ready(self) -> bool:
        assert self.proc.poll() is None, self.proc.stderr.read().decode()[-500:]
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
            return True
        except OSError:
            return False

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def test_two_python_socketio_nodes(fanout, redis_server):
    nodes = [SocketIoNode(redis_server.url) for _ in range(2)]
    try:
        for node in nodes:
            wait_for(node.ready, timeout=20)
        ports = [n.port for n in nodes]
        assert_everything_arrived(run_fanout(fanout, ports, "--sio", "--inflight", "4"))
        assert_everything_arrived(run_fanout(fanout, ports, "--sio", "--rate", "20"), paced=20)
    finally:
        for node in nodes:
            node.stop()
