"""--processes N: the refusals, and the supervising parent with real children and clients.

Every daemon with N > 1 runs with ``--broker`` on the ``redis_server`` fixture (a real
redis-server). The children are named by the parent's slot records, as ``/status`` shows them.
"""

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

import pytest
import websockets

from tests.support.daemon_process import free_port


def run_refused(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "wsdaemon", "run", "--port", str(free_port()), *args],
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_processes_without_broker_is_refused():
    proc = run_refused("--processes", "2")
    assert proc.returncode == 2
    assert "--processes 2 needs --broker" in proc.stderr


def test_processes_with_worker_listen_is_refused(redis_server, tmp_path):
    token = tmp_path / "token"
    token.write_text("secret")
    proc = run_refused(
        "--processes", "2", "--broker", redis_server.url,
        "--worker-listen", f"127.0.0.1:{free_port()}", "--worker-token-file", str(token),
    )  # fmt: skip
    assert proc.returncode == 2
    assert "--worker-listen cannot be used with --processes 2" in proc.stderr


def status(port: int) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=5) as resp:
        return json.loads(resp.read())


def children(port: int) -> dict[int, int]:
    """slot -> pid of the live children, from the slot records (0 slots missing)."""
    return {
        p["slot"]: p["pid"] for p in status(port)["process"]["processes"] if p["pid"] and p["status_port"]
    }


def wait_children(port: int, count: int = 2, timeout: float = 20.0, without: int = 0) -> dict[int, int]:
    deadline = time.monotonic() + timeout
    while True:
        try:
            found = children(port)
        except OSError:
            found = {}
        if len(found) == count and without not in found.values():
            return found
        assert time.monotonic() < deadline, f"children not up: {found}"
        time.sleep(0.1)


def parent_of(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


@pytest.fixture
def parent(daemon_factory, redis_server):
    d = daemon_factory("--processes", "2", "--broker", redis_server.url, "--shutdown-grace", "3")
    wait_children(d.port)
    return d


def test_sighup_reloads_children_without_replacing_them(parent):
    before = wait_children(parent.port)
    assert all(parent_of(pid) == parent.proc.pid for pid in before.values())
    parent.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 15
    while parent.log().count("configuration reloaded") < 2:  # once in each child
        assert time.monotonic() < deadline, parent.log()[-3000:]
        time.sleep(0.1)
    assert parent.alive()
    assert wait_children(parent.port) == before  # reloaded in place, not restarted
    log = parent.log()
    assert "SIGHUP: children reload" in log
    assert " died " not in log
    assert parent.stop() == 0


def test_children_serve_get_replaced_and_stop_with_1001(parent):
    seen = wait_children(parent.port)
    port = parent.port

    async def scenario():
        victim, survivor = seen[0], seen[1]
        clients = [await websockets.connect(f"ws://127.0.0.1:{port}/echo") for _ in range(8)]
        os.kill(victim, signal.SIGKILL)
        replaced = wait_children(port, without=victim)
        assert replaced[1] == survivor and replaced[0] != victim
        alive = []
        for ws in clients:
            try:
                await ws.send("ping")
                assert await asyncio.wait_for(ws.recv(), 5) == "ping"
                alive.append(ws)
            except websockets.ConnectionClosed:
                pass
        assert alive, "the surviving child's clients must keep working"
        parent.proc.send_signal(signal.SIGTERM)
        for ws in alive:
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), 15)
            assert closed.value.rcvd.code == 1001

    asyncio.run(scenario())
    assert parent.proc.wait(20) == 0
    assert "child 0 (pid" in parent.log() and "died (SIGKILL)" in parent.log()


def test_sigusr1_reopens_the_log_in_the_parent_and_every_child(daemon_factory, redis_server, tmp_path):
    logfile = tmp_path / "wsdaemon.log"
    d = daemon_factory(
        "--processes", "2", "--broker", redis_server.url, "--logfile", str(logfile), "--log-level", "debug"
    )
    wait_children(d.port)
    rotated = tmp_path / "wsdaemon.log.1"
    os.rename(logfile, rotated)
    d.proc.send_signal(signal.SIGUSR1)
    deadline = time.monotonic() + 15
    while not logfile.exists() or logfile.read_text().count("(re)opened") < 3:  # the parent, then each child
        assert time.monotonic() < deadline, logfile.read_text() if logfile.exists() else "no new log file"
        time.sleep(0.1)

    async def clients():  # enough connections that both children log one
        for n in range(8):
            async with websockets.connect(f"ws://127.0.0.1:{d.port}/after-rotation-{n}") as ws:
                await ws.send("x")
                assert await ws.recv() == "x"

    asyncio.run(clients())
    deadline = time.monotonic() + 10
    while logfile.read_text().count("/after-rotation-") < 8:
        assert time.monotonic() < deadline, logfile.read_text()[-2000:]
        time.sleep(0.1)
    assert "/after-rotation-" not in rotated.read_text()
    assert wait_children(d.port)  # nobody died of the signal
    assert " died " not in logfile.read_text() + rotated.read_text()
