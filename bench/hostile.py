#!/usr/bin/env python3
"""Fairness under hostile load: normal clients' round trips while one client misbehaves.

    python3 bench/hostile.py [--patterns none,fragments,bursts,pings,pings-noread]
                             [--duration 8] [--wsdaemon-src DIR] [--baseline-src DIR]

The daemon (``wsdaemon.apps.echo``) runs pinned to core 0; 50 normal clients on core 1 each
send a 32-byte text every 20 ms and time its echo; one hostile client, also on core 1, runs one
pattern for the whole run:

- ``fragments``: one endless message of 1-byte fragments (reconnects when it is closed);
- ``bursts``: bursts of 100,000 one-byte text messages, reading the echoes;
- ``pings``: a ping flood, reading the pongs;
- ``pings-noread``: a ping flood that never reads (the daemon's CPU is measured over the 5 s
  after it is closed, from ``/status``'s pid).

Printed per pattern: the normal clients' RTT p50 / p99 / max, the share of round trips over
15 ms, clients dropped and messages lost (every echo is checked in order), how often the
hostile client was closed and with which codes (from the daemon's log), and the daemon's CPU.
With ``--baseline-src`` the same run measures another tree too, side by side. Loopback only;
each run is bounded by ``--duration``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import multiprocessing
import os
import re
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from servers import CLK_TCK, free_port, python_env  # noqa: E402

NORMAL = 50
INTERVAL = 0.020
SIZE = 32
MASK = b"\x11\x22\x33\x44"
LATE_MS = 15.0
PATTERNS = ("none", "fragments", "bursts", "pings", "pings-noread")


def masked(opcode: int, payload: bytes, fin: bool = True) -> bytes:
    head = bytes([(0x80 if fin else 0) | opcode])
    n = len(payload)
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + struct.pack("!H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack("!Q", n)
    body = bytes(b ^ MASK[i & 3] for i, b in enumerate(payload))
    return head + MASK + body


def handshake(sock: socket.socket, port: int) -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("closed during the handshake")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 101"):
        raise ConnectionError(head.split(b"\r\n")[0].decode())
    return rest


# -- the hostile client (a thread of its own, blocking sockets) ----------------------------------


class Hostile:
    """The misbehaving client: a process of its own (threads here would take the GIL from the
    normal clients and show up in their round trips), on the clients' core."""

    def __init__(self, pattern: str, port: int) -> None:
        self.pattern, self.port = pattern, port
        self.stop = multiprocessing.Event()
        self._connections = multiprocessing.Value("i", 0)
        self.process = multiprocessing.Process(target=self.run, daemon=True)

    @property
    def connections(self) -> int:
        return self._connections.value

    def connect(self) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        handshake(sock, self.port)
        with self._connections.get_lock():
            self._connections.value += 1
        return sock

    def run(self) -> None:
        os.nice(10)  # one machine stands in for two: the normal clients' CPU is not the hostile one's
        try:
            getattr(self, "run_" + self.pattern.replace("-", "_"))()
        except OSError:
            pass

    def blast(self, first: bytes, chunk: bytes, read: bool, reconnect: bool = True) -> None:
        """Send ``first`` then ``chunk`` over and over; reconnect when the daemon drops us."""
        while not self.stop.is_set():
            try:
                sock = self.connect()
            except OSError:
                time.sleep(0.01)
                continue
            reader = None
            if read:
                reader = threading.Thread(target=drain, args=(sock, self.stop), daemon=True)
                reader.start()
            try:
                sock.settimeout(1.0)
                sock.sendall(first)
                while not self.stop.is_set():
                    try:
                        sock.sendall(chunk)
                    except TimeoutError:
                        continue
            except OSError:
                pass
            finally:
                sock.close()
            if not reconnect:
                self.stop.wait()

    def run_fragments(self) -> None:
        self.blast(masked(1, b"a", fin=False), masked(0, b"a", fin=False) * 9000, read=True)

    def run_bursts(self) -> None:
        self.blast(b"", masked(1, b"a") * 100_000, read=True)

    def run_pings(self) -> None:
        self.blast(b"", masked(9, b"p") * 9000, read=True)

    def run_pings_noread(self) -> None:
        self.blast(b"", masked(9, b"p") * 9000, read=False, reconnect=False)

    def run_none(self) -> None:
        self.stop.wait()


def drain(sock: socket.socket, stop: threading.Event) -> None:
    try:
        while not stop.is_set():
            if not sock.recv(262144):
                return
    except OSError:
        return


# -- the normal clients (asyncio) ----------------------------------------------------------------


class Normal(asyncio.Protocol):
    FRAME = masked(1, b"x" * SIZE)
    ECHO = bytes([0x81, SIZE]) + b"x" * SIZE

    def __init__(self, rtts: list, stats: dict) -> None:
        self.rtts, self.stats = rtts, stats
        self.buf = b""
        self.open = asyncio.get_running_loop().create_future()
        self.sent: list[float] = []
        self.transport = None
        self.upgraded = False
        self.lost = False

    def connection_made(self, transport) -> None:
        self.transport = transport
        key = base64.b64encode(os.urandom(16)).decode()
        transport.write(
            (
                "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )

    def data_received(self, data: bytes) -> None:
        now = time.perf_counter()
        self.buf += data
        if not self.upgraded:
            if b"\r\n\r\n" not in self.buf:
                return
            head, _, self.buf = self.buf.partition(b"\r\n\r\n")
            self.upgraded = head.startswith(b"HTTP/1.1 101")
            self.open.set_result(self.upgraded)
        n = len(self.ECHO)
        while len(self.buf) >= n:
            frame, self.buf = self.buf[:n], self.buf[n:]
            if frame != self.ECHO or not self.sent:
                self.stats["bad"] += 1
                continue
            self.rtts.append((now - self.sent.pop(0)) * 1000)

    def connection_lost(self, exc) -> None:
        self.lost = True
        if not self.open.done():
            self.open.set_result(False)

    def send(self) -> None:
        if not self.lost:
            self.sent.append(time.perf_counter())
            self.transport.write(self.FRAME)


async def normal_clients(port: int, duration: float, start_hostile) -> dict:
    loop = asyncio.get_running_loop()
    rtts: list[float] = []
    stats = {"bad": 0}
    clients = []
    for _ in range(NORMAL):
        _, proto = await loop.create_connection(lambda: Normal(rtts, stats), "127.0.0.1", port)
        clients.append(proto)
    assert all(await asyncio.gather(*(c.open for c in clients))), "a normal client was refused"
    start_hostile()
    t0 = time.perf_counter()
    tick = 0
    while time.perf_counter() - t0 < duration:
        for i, c in enumerate(clients):  # each client every 20 ms, spread over the interval
            loop.call_later(INTERVAL * i / NORMAL, c.send)
        tick += 1
        await asyncio.sleep(max(0.0, t0 + tick * INTERVAL - time.perf_counter()))
    await asyncio.sleep(0.5)  # the last echoes
    outstanding = sum(len(c.sent) for c in clients)
    dropped = sum(c.lost for c in clients)
    for c in clients:
        c.transport.close()
    return {"rtts": rtts, "bad": stats["bad"], "outstanding": outstanding, "dropped": dropped}


# -- a run ----------------------------------------------------------------------------------------


def daemon_cpu(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def one_run(src: Path, pattern: str, duration: float, work: Path, extra: tuple[str, ...] = ()) -> dict:
    port = free_port(18600, 18800)
    log = work / f"daemon-{port}.log"
    launcher = [sys.executable, str(BENCH / "wsdaemon_launcher.py"), str(src)]
    cmd = ["taskset", "-c", "0", *launcher, "run", "--host", "127.0.0.1", "--port", str(port)]
    cmd += ["--app", "wsdaemon.apps.echo:app", "--max-connections", "0", "--log-level", "info"]
    if "max_connects_per_second" in (src / "wsdaemon" / "settings.py").read_text():
        cmd += ["--max-connects-per-second", "0"]  # the 50 normal clients connect at once
    cmd += extra
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=out, env=python_env(), start_new_session=True)
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-500:]
                time.sleep(0.05)
        hostile = Hostile(pattern, port)
        stop = hostile.stop
        marks: dict[str, float] = {}

        def sample_after() -> None:  # the daemon's CPU from 1 s to 6 s after the hostile client began
            if not stop.wait(1.0):
                first = daemon_cpu(proc.pid)
                if not stop.wait(5.0):
                    marks["cpu_1_to_6"] = (daemon_cpu(proc.pid) - first) / 5.0

        def start_hostile() -> None:
            marks["cpu0"], marks["t0"] = daemon_cpu(proc.pid), time.monotonic()
            hostile.process.start()
            threading.Thread(target=sample_after, daemon=True).start()

        result = asyncio.run(normal_clients(port, duration, start_hostile))
        cpu = daemon_cpu(proc.pid) - marks["cpu0"]
        wall = time.monotonic() - marks["t0"]
        stop.set()
        hostile.process.join(10)
        if hostile.process.is_alive():
            hostile.process.kill()
    finally:
        proc.terminate()
        proc.wait(10)
    text = log.read_text(errors="replace")
    codes: dict[str, int] = {}
    for code in re.findall(r"failing .*?: (\d{4}) ", text) + re.findall(
        r"slow consumer.*closing with (\d{4})", text
    ):
        codes[code] = codes.get(code, 0) + 1
    rtts = sorted(result["rtts"])
    return {
        "pattern": pattern,
        "round_trips": len(rtts),
        "p50_ms": statistics.median(rtts) if rtts else None,
        "p99_ms": rtts[int(0.99 * (len(rtts) - 1))] if rtts else None,
        "max_ms": rtts[-1] if rtts else None,
        "late_share": sum(r > LATE_MS for r in rtts) / max(1, len(rtts)),
        "normal_dropped": result["dropped"],
        "normal_lost": result["outstanding"] + result["bad"],
        "hostile_connections": hostile.connections,
        "hostile_closed_with": codes,
        "daemon_cpu_share": cpu / wall,
        "daemon_cpu_1_to_6_s": marks.get("cpu_1_to_6"),
        "tracebacks": text.count("Traceback"),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--patterns", default=",".join(PATTERNS))
    p.add_argument("--duration", type=float, default=8.0)
    p.add_argument("--wsdaemon-src", type=Path, default=BENCH.parent)
    p.add_argument("--baseline-src", type=Path)
    p.add_argument("--out", type=Path)
    p.add_argument(
        "--daemon-args", default="", help='more options for the tree under test, e.g. "--read-budget 4k"'
    )
    args = p.parse_args()
    os.sched_setaffinity(0, {1})  # the clients' core
    trees = {"wsdaemon": args.wsdaemon_src}
    if args.baseline_src:
        trees["baseline"] = args.baseline_src
    results = []
    with tempfile.TemporaryDirectory(prefix="wsdaemon-hostile-") as tmp:
        for pattern in args.patterns.split(","):
            for name, src in trees.items():
                extra = tuple(args.daemon_args.split()) if name == "wsdaemon" else ()
                run = one_run(src, pattern, args.duration, Path(tmp), extra)
                run["tree"] = name
                results.append(run)
                print(line(run), flush=True)
    out = args.out or BENCH / "results" / time.strftime("hostile-%Y%m%d-%H%M%S.json")
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=1))
    print(f"results: {out}")
    return 0


def line(run: dict) -> str:
    return (
        f"{run['tree']:9} {run['pattern']:13} RTT p50 {run['p50_ms']:.2f} / p99 {run['p99_ms']:.2f} / "
        f"max {run['max_ms']:.1f} ms, {run['late_share'] * 100:.1f}% over {LATE_MS:.0f} ms, "
        f"{run['round_trips']} round trips, dropped {run['normal_dropped']}, lost {run['normal_lost']}; "
        f"hostile: {run['hostile_connections']} connections, closed {run['hostile_closed_with']}; "
        f"daemon CPU {run['daemon_cpu_share'] * 100:.0f}% (1-6 s: {(run['daemon_cpu_1_to_6_s'] or 0) * 100:.0f}%), "
        f"tracebacks {run['tracebacks']}"
    )


if __name__ == "__main__":
    sys.exit(main())
