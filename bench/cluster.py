#!/usr/bin/env python3
"""Cross-node fan-out: one publisher on node A, members split over nodes A and B, joined by Redis.

    python3 bench/cluster.py [--systems wsdaemon,python-socketio,node-socketio] [--conns 1000]
                             [--size 32] [--inflight 16] [--duration 5] [--repeat 2]

For each system and repetition a fresh redis-server (Debian's, loopback, no persistence) and two
fresh nodes are started, node A pinned to core 0 and node B to core 1; ``build/fanout`` (fanout.c)
connects the members round robin to A and B and publishes from member 0. Two runs per system:

- **peak**: the publisher keeps ``--inflight`` publications that node B's last member has not
  received yet; deliveries/s (to every member, both nodes) and the latency of each delivery;
- **paced**: ``--load`` (0.5) times wsdaemon's median peak publications/s, the same rate for
  every system: deliveries/s reached and the p99 latency at that load.

Every process's CPU seconds are recorded (nodes, redis-server, the load generator), so a
saturated load generator would show. The medians and spreads go to stdout as a Markdown table
and, with every run, to bench/results/cluster-<time>.json. Loopback only; every run is bounded.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from servers import PEERS, RedisBroker, Running, Unavailable, free_port, node_setup, proc_cpu, python_env  # noqa: E402

BUILD = BENCH / "build"
SIO_NODE_DIR = PEERS / "node-socketio"
NODE_CORES = ("0", "1")
LATENCY_CAP_MS = 1000.0  # fanout.c's histogram ends at 1 s: a p99 there means the system fell behind


@dataclass
class System:
    name: str
    sio: bool  # speaks Socket.IO (fanout --sio)

    def command(self, port: int, redis_url: str, src: Path) -> list[str]:
        if self.name.startswith("wsdaemon"):
            launcher = [sys.executable, str(BENCH / "wsdaemon_launcher.py"), str(src)]
            options = "--host 127.0.0.1 --max-connections 0 --log-level warning --app wsdaemon.apps.room:app"
            if "max_connects_per_second" in (src / "wsdaemon" / "settings.py").read_text():
                options += " --max-connects-per-second 0"  # an older tree has no rate limit
            return [*launcher, "run", "--port", str(port), *options.split(), "--broker", redis_url]
        if self.name.startswith("python-socketio"):
            uv = ["--uvloop"] if self.name.endswith("uvloop") else []
            script = str(PEERS / "socketio_server.py")
            return [sys.executable, script, "--port", str(port), "--redis", redis_url, *uv]
        return ["node", str(SIO_NODE_DIR / "server.js"), "--port", str(port), "--redis", redis_url]


SYSTEMS = {
    s.name: s
    for s in (
        System("wsdaemon", False),
        System("python-socketio", True),
        System("python-socketio+uvloop", True),
        System("node-socketio", True),
    )
}


def preflight(system: System) -> None:
    if system.name.startswith("python-socketio"):
        mods = "socketio, redis, aiohttp" + (", uvloop" if system.name.endswith("uvloop") else "")
        check = subprocess.run([sys.executable, "-c", f"import {mods}"], capture_output=True, text=True)
        if check.returncode:
            raise Unavailable(check.stderr.strip().splitlines()[-1] + " (bash bench/setup.sh)")
    elif system.name == "node-socketio":
        node_setup(SIO_NODE_DIR, ("socket.io", "@socket.io/redis-adapter", "redis"))


def one_run(system: System, args, work: Path, rate: float | None) -> dict:
    broker = RedisBroker(free_port(17000, 17500), work, None)  # unpinned: A and B have a core each
    url = broker.url
    nodes: list[Running] = []
    try:
        ports = []
        env = python_env()
        for core in NODE_CORES:
            port = free_port(17500, 18500)
            cwd = SIO_NODE_DIR if system.name == "node-socketio" else None
            log = work / f"{system.name}-{port}.log"
            node = Running(system.command(port, url, args.wsdaemon_src), port, log, env, cpu=core, cwd=cwd)
            nodes.append(node)
            node.wait_ready(20.0)
            ports.append(port)
        cmd = [str(BUILD / "fanout"), "--ports", ",".join(map(str, ports)), "--conns", str(args.conns)]
        cmd += ["--size", str(args.size), "--duration", str(args.duration), "--warmup", "1"]
        cmd += ["--rate", f"{rate:.1f}"] if rate else ["--inflight", str(args.inflight)]
        cmd += ["--sio"] if system.sio else []
        cpus = [*(n.cpu_seconds for n in nodes), lambda: proc_cpu(broker.proc.pid)]
        before = [cpu() for cpu in cpus]
        started, usage = time.monotonic(), resource.getrusage(resource.RUSAGE_CHILDREN)
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=args.duration + 90)
        wall, usage_after = time.monotonic() - started, resource.getrusage(resource.RUSAGE_CHILDREN)
        loadgen = usage_after.ru_utime + usage_after.ru_stime - usage.ru_utime - usage.ru_stime
        lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
        result = json.loads(lines[-1]) if lines else {"error": out.stderr.strip()[-300:] or "no output"}
        if out.stderr.strip():
            result["stderr"] = out.stderr.strip()[-300:]
        after = [cpu() for cpu in cpus]
        used = [round(a - b, 2) for a, b in zip(after, before, strict=True)]
        result["cpu_s"] = {
            "node_a": used[0],
            "node_b": used[1],
            "redis": used[2],
            "loadgen": round(loadgen, 2),
            "wall": round(wall, 2),
        }
        for node in nodes:
            if node.proc.poll() is not None:
                result.setdefault("error", f"{node.log.name} died: {node.log_tail()}")
        return result
    finally:
        for node in nodes:
            node.stop()
        broker.stop()


def summary(runs: list[dict], field: str) -> dict:
    values = [r[field] for r in runs if "error" not in r and r.get(field, -1) >= 0]
    if not values:
        return {"median": None}
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--systems", default="wsdaemon,python-socketio,python-socketio+uvloop,node-socketio")
    p.add_argument("--conns", type=int, default=1000)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--inflight", type=int, default=16)
    p.add_argument("--duration", type=float, default=5.0)
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--load", type=float, default=0.5, help="paced run: this share of wsdaemon's peak rate")
    p.add_argument("--wsdaemon-src", type=Path, default=BENCH.parent)
    p.add_argument("--out", type=Path)
    args = p.parse_args()
    systems = [SYSTEMS[name] for name in args.systems.split(",")]
    if systems[0].name != "wsdaemon":
        p.error("the first system must be wsdaemon (the paced rate is a share of its peak)")
    if not shutil.which("redis-server"):
        p.error("redis-server is not installed (apt-get install redis-server)")
    BUILD.mkdir(exist_ok=True)
    subprocess.run(
        ["gcc", "-O2", "-Wall", "-Wextra", "-o", str(BUILD / "fanout"), str(BENCH / "fanout.c")], check=True
    )
    results: dict = {"args": {k: str(v) for k, v in vars(args).items()}, "systems": {}}
    rate = None
    with tempfile.TemporaryDirectory(prefix="wsdaemon-cluster-") as tmp:
        work = Path(tmp)
        for phase in ("peak", "paced"):
            for system in systems:
                entry = results["systems"].setdefault(system.name, {})
                try:
                    preflight(system)
                except Unavailable as exc:
                    entry["unavailable"] = str(exc)
                    print(f"{system.name}: unavailable: {exc}", flush=True)
                    continue
                runs = []
                for _ in range(args.repeat):
                    run = one_run(system, args, work, rate if phase == "paced" else None)
                    runs.append(run)
                    print(f"{system.name} {phase}: {describe(run)}", flush=True)
                entry[phase] = {
                    "runs": runs,
                    **{
                        f: summary(runs, f)
                        for f in ("deliveries_per_s", "publications_per_s", "p50_ms", "p99_ms")
                    },
                }
            if phase == "peak":
                peak = (
                    results["systems"]["wsdaemon"].get("peak", {}).get("publications_per_s", {}).get("median")
                )
                if not peak:
                    print("wsdaemon has no peak figure: no paced runs", flush=True)
                    break
                rate = args.load * peak
                results["paced_rate"] = rate
    out = args.out or BENCH / "results" / time.strftime("cluster-%Y%m%d-%H%M%S.json")
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=1))
    print(table(results, args))
    print(f"results: {out}")
    return 0


def describe(run: dict) -> str:
    if "error" in run:
        return f"error: {run['error']}"
    cpu = run["cpu_s"]
    return (
        f"{run['deliveries_per_s']:,.0f} deliv/s ({run['publications_per_s']:,.0f} pub/s), p50 {run['p50_ms']:.2f} ms, "
        f"p99 {run['p99_ms']:.2f} ms, lost {run['lost']}, cpu A {cpu['node_a']} B {cpu['node_b']} "
        f"redis {cpu['redis']} loadgen {cpu['loadgen']} s in {cpu['wall']} s"
    )


def fmt(s: dict, unit: str = "") -> str:
    if s.get("median") is None:
        return "—"
    m, lo, hi = s["median"], s["min"], s["max"]
    if unit == "ms":
        if m >= LATENCY_CAP_MS:
            return f"> {LATENCY_CAP_MS:.0f} (behind)"
        return f"{m:.2f} ({lo:.2f}–{hi:.2f})"
    return f"{m / 1000:,.0f}k ({(lo - m) / m * 100:+.0f}/{(hi - m) / m * 100:+.0f}%)"


def table(results: dict, args) -> str:
    rate = results.get("paced_rate")
    lines = [
        f"cross-node fan-out: {args.conns} members over 2 nodes, {args.size} B, publisher on node A",
        "",
        "| system | peak deliveries/s | wsdaemon / this | p99 at peak, ms | "
        + (f"p99 at {rate:,.0f} pub/s, ms | deliveries/s there |" if rate else "paced |"),
        "|---|---:|---:|---:|---:|---:|",
    ]
    base = results["systems"]["wsdaemon"].get("peak", {}).get("deliveries_per_s", {}).get("median")
    for name, entry in results["systems"].items():
        if "unavailable" in entry:
            lines.append(f"| {name} | unavailable: {entry['unavailable']} | | | | |")
            continue
        peak, paced = entry.get("peak", {}), entry.get("paced", {})
        d = peak.get("deliveries_per_s", {})
        ratio = f"{base / d['median']:.2f}x" if base and d.get("median") else "—"
        lines.append(
            f"| {name} | {fmt(d)} | {ratio} | {fmt(peak.get('p99_ms', {}), 'ms')} | "
            f"{fmt(paced.get('p99_ms', {}), 'ms')} | {fmt(paced.get('deliveries_per_s', {}))} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
