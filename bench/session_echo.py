"""Smoke benchmark: echo through a resumable session (the JS client's envelope) against raw echo.

Starts ``wsdaemon run --app wsdaemon.apps.echo:app`` pinned to core 0 (when
``taskset`` exists) and drives it from this process (asyncio + websockets) with
the same connections and messages in flight, once raw and once with
``?wsdaemon_session=new``: messages numbered by their place (the payload as it
is), the ``!h`` hello skipped, an ``!a`` ack every 100 ms. The load generator is Python, so the
figure is a smoke test of the envelope's cost, not the C load generator's
(``docs/sessions.md`` says what ``bench/loadgen.c`` would send).

    python3 bench/session_echo.py --connections 50 --inflight 10 --duration 3
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

from websockets.asyncio.client import connect

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from wsdaemon.proto.session import encode_ack  # noqa: E402

PAYLOAD = "x" * 32


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_daemon(port: int) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "wsdaemon", "run", "--host", "127.0.0.1", "--port", str(port)]
    cmd += ["--app", "wsdaemon.apps.echo:app", "--log-level", "warning", "--no-longpoll"]
    if shutil.which("taskset"):
        cmd = ["taskset", "-c", "0", *cmd]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(cmd, env=env, cwd=str(REPO))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return proc
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("the daemon did not start")


async def client(url: str, session: bool, inflight: int, stop_at: float, counts: list[int]) -> None:
    async with connect(url + ("?wsdaemon_session=new" if session else ""), compression=None) as ws:
        if session:
            hello = await ws.recv()
            assert hello.startswith("!h"), hello
        seq = received = acked = 0
        last_ack = time.monotonic()

        async def send_one() -> None:
            nonlocal seq
            seq += 1
            await ws.send(PAYLOAD)

        for _ in range(inflight):
            await send_one()
        while time.monotonic() < stop_at:
            message = await ws.recv()
            if session and message[:1] == "!":
                continue  # the server's ack of our messages
            received += 1
            counts[0] += 1
            await send_one()
            if session and time.monotonic() - last_ack > 0.1 and received > acked:
                await ws.send(encode_ack(received))
                acked, last_ack = received, time.monotonic()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of the daemon so far (``/proc/PID/stat``)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def run(
    port: int, pid: int, session: bool, connections: int, inflight: int, duration: float
) -> tuple[float, float]:
    """Echoes per second, and the daemon's CPU microseconds per echo (the figure the client cannot cap)."""
    url = f"ws://127.0.0.1:{port}/"
    counts = [0]
    warm_until = time.monotonic() + 0.5
    stop_at = warm_until + duration
    tasks = [asyncio.create_task(client(url, session, inflight, stop_at, counts)) for _ in range(connections)]
    await asyncio.sleep(max(0.0, warm_until - time.monotonic()))
    start_count, start, cpu = counts[0], time.monotonic(), cpu_seconds(pid)
    await asyncio.wait_for(asyncio.gather(*tasks), timeout=duration + 30)
    done = counts[0] - start_count
    return done / (time.monotonic() - start), (cpu_seconds(pid) - cpu) * 1e6 / max(1, done)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--inflight", type=int, default=10)
    parser.add_argument("--duration", type=float, default=3.0)
    args = parser.parse_args()
    if shutil.which("taskset"):
        os.sched_setaffinity(0, {1})
    port = free_port()
    proc = start_daemon(port)
    try:
        raw, raw_cpu = asyncio.run(run(port, proc.pid, False, args.connections, args.inflight, args.duration))
        sess, sess_cpu = asyncio.run(
            run(port, proc.pid, True, args.connections, args.inflight, args.duration)
        )
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    print(f"raw echo      {raw:10.0f} messages/s  {raw_cpu:6.1f} us daemon CPU per echo")
    print(
        f"session echo  {sess:10.0f} messages/s  {sess_cpu:6.1f} us daemon CPU per echo"
        f"  (throughput {sess / raw:.2f}x raw; daemon CPU says {raw_cpu / sess_cpu:.2f}x)"
    )


if __name__ == "__main__":
    main()
