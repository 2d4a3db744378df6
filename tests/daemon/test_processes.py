"""--processes N: refusal without a broker, and the supervising parent with real children and clients."""

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

from tests.support.daemon_process import REPO, free_port, wait_for_port


def test_processes_without_broker_is_refused():
    proc = subprocess.run(
        [sys.executable, "-m", "wsdaemon", "run", "--processes", "2", "--port", str(free_port())],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 2
    assert "--processes 2 needs --broker" in proc.stderr


def status_pid(port: int) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=5) as resp:
        return json.loads(resp.read())["pid"]


def parent_of(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


@pytest.fixture
def parent():
    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.support.processes_host", str(port), "2", "wsdaemon.apps.echo:app"],
        env=env,
        cwd=str(REPO),
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_for_port("127.0.0.1", port, proc=proc)
    yield proc, port
    if proc.poll() is None:
        proc.kill()
    proc.wait(10)


def pids_seen(port: int, want: int, tries: int = 200) -> set[int]:
    seen: set[int] = set()
    for _ in range(tries):
        seen.add(status_pid(port))
        if len(seen) >= want:
            break
    return seen


def test_sighup_reloads_children_without_replacing_them(parent):
    proc, port = parent
    seen = pids_seen(port, 2)
    assert len(seen) == 2
    proc.send_signal(signal.SIGHUP)
    time.sleep(1.0)
    assert proc.poll() is None
    assert pids_seen(port, 2) == seen  # reloaded in place, not restarted
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(20) == 0
    log = proc.stderr.read()
    assert "SIGHUP: children reload" in log
    assert log.count("configuration reloaded") == 2  # once in each child


def test_children_serve_get_replaced_and_stop_with_1001(parent):
    proc, port = parent
    seen = pids_seen(port, 2)
    assert len(seen) == 2 and all(parent_of(pid) == proc.pid for pid in seen)

    async def scenario():
        victim, survivor = sorted(seen)
        clients = [await websockets.connect(f"ws://127.0.0.1:{port}/echo") for _ in range(8)]
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            pids = pids_seen(port, 2, tries=50)
            if len(pids) == 2 and victim not in pids:
                break
            await asyncio.sleep(0.2)
        assert survivor in pids and victim not in pids and len(pids) == 2
        alive = []
        for ws in clients:
            try:
                await ws.send("ping")
                assert await asyncio.wait_for(ws.recv(), 5) == "ping"
                alive.append(ws)
            except websockets.ConnectionClosed:
                pass
        assert alive, "the surviving child's clients must keep working"
        proc.send_signal(signal.SIGTERM)
        for ws in alive:
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), 15)
            assert closed.value.rcvd.code == 1001

    asyncio.run(scenario())
    assert proc.wait(20) == 0
