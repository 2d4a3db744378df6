"""Benchmark runner: every selected server against every selected profile.

Builds the C programs, then for each repetition, server and profile starts a
fresh server pinned to core 0, drives it with bench/build/loadgen pinned to
core 1, and stops it. Prints one line per run, then one table (median, spread,
ratio wsdaemon/peer) and writes everything to bench/results/<time>.json.

    python bench/run.py                      # all servers, all profiles, 3 repeats
    python bench/run.py --quick              # smoke test: short runs, small counts
    python bench/run.py --servers wsdaemon,aiohttp+uvloop --profiles a,b --repeat 5
    python bench/run.py --profiles z,zb,zi,d --servers wsdaemon,websockets,node-ws   # compression
"""

import argparse
import json
import platform
import resource
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from importlib import metadata
from pathlib import Path

from profiles import LOADGEN_CPU, PROFILES, cores_busy, loadgen_args, measure
from report import DISTURBED, compression_table, human, peer_goals, save, summarize, table
from servers import (
    BENCH,
    NODE_DIR,
    SERVERS,
    RedisBroker,
    Running,
    Unavailable,
    add_baseline,
    free_port,
    preflight,
    python_env,
)

BUILD = BENCH / "build"
RESULTS = BENCH / "results"
C_PROGRAMS = {"loadgen": BENCH / "loadgen.c", "c_echo": BENCH / "peers" / "c_echo.c"}
C_HEADERS = [BENCH / "ws_accept.h", BENCH / "loadgen_deflate.h"]
C_LIBS = {"loadgen": ["-lz"]}  # zlib for --deflate (Debian: zlib1g-dev; bench/setup.sh)


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--profiles", default=",".join(PROFILES), help="comma list of " + ",".join(PROFILES))
    p.add_argument("--servers", default=",".join(SERVERS), help="comma list of " + ",".join(SERVERS))
    p.add_argument("--duration", type=float, default=5.0, help="measured seconds per run")
    p.add_argument("--warmup", type=float, default=1.0, help="unmeasured seconds before that")
    p.add_argument("--repeat", type=int, default=3, help="runs per server and profile")
    p.add_argument(
        "--retries", type=int, default=2, help="redo a run when other processes took > 15%% of a core"
    )
    p.add_argument(
        "--quiet-wait",
        type=float,
        default=60.0,
        help="seconds to wait before a run for other processes to go idle",
    )
    p.add_argument("--quick", action="store_true", help="1 run of 1 s, small connection counts")
    p.add_argument("--port-base", type=int, default=18600, help="servers use ports from here")
    p.add_argument(
        "--wsdaemon-src",
        type=Path,
        default=BENCH.parent,
        help="source tree to import wsdaemon from (default: this checkout)",
    )
    p.add_argument(
        "--baseline-src",
        type=Path,
        help="another wsdaemon tree measured in the same run as server wsdaemon@baseline (before/after)",
    )
    args = p.parse_args()
    if args.baseline_src:
        args.servers += "," + add_baseline(args.baseline_src)
    if args.quick:
        args.duration, args.warmup, args.repeat = 1.0, 0.3, 1
    args.profiles = [k.strip() for k in args.profiles.split(",") if k.strip()]
    args.servers = [s.strip() for s in args.servers.split(",") if s.strip()]
    unknown = [k for k in args.profiles if k not in PROFILES]
    unknown += [s for s in args.servers if s not in SERVERS]
    if unknown:
        p.error(f"unknown profile or server: {', '.join(unknown)}")
    return args


def build() -> None:
    """gcc -O2 each C program into bench/build/ when its source is newer."""
    BUILD.mkdir(exist_ok=True)
    for name, src in C_PROGRAMS.items():
        out = BUILD / name
        deps = [src, *C_HEADERS]
        if out.exists() and all(out.stat().st_mtime >= d.stat().st_mtime for d in deps):
            continue
        cmd = ["gcc", "-O2", "-Wall", "-Wextra", "-o", str(out), str(src), *C_LIBS.get(name, [])]
        subprocess.run(cmd, check=True)


def raise_fd_limit() -> None:
    """Soft RLIMIT_NOFILE up to the hard limit; servers and loadgen inherit it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def machine() -> dict:
    cpu = next(
        (line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
        "?",
    )
    versions = {}
    for dist in ("websockets", "aiohttp", "tornado", "uvloop"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    try:
        versions["node"] = subprocess.run(
            ["node", "--version"], capture_output=True, text=True
        ).stdout.strip()
        with open(NODE_DIR / "package.json") as f:
            versions.update({f"npm:{k}": v for k, v in json.load(f)["dependencies"].items()})
    except (OSError, ValueError, KeyError):
        versions["node"] = None
    return {
        "cpu": cpu,
        "cores": len(open("/proc/cpuinfo").read().split("processor")) - 1,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "nofile": resource.getrlimit(resource.RLIMIT_NOFILE),
        "versions": versions,
    }


def wait_quiet(max_wait: float) -> float:
    """Wait (up to max_wait s) until other processes use < 10% of the two cores.

    Nothing of ours runs between runs, so any busy time now is someone else's
    (other test suites on a shared machine). Returns the share seen last.
    """
    deadline = time.monotonic() + max_wait
    while True:
        before = cores_busy()
        time.sleep(0.5)
        share = (cores_busy() - before) / 0.5
        if share < 0.1 or time.monotonic() > deadline:
            return share
        time.sleep(1.0)


def one_run(args, server, profile, loadgen: list[str], log: Path) -> dict:
    """Start a fresh server, measure one profile once, stop it."""
    wait_quiet(args.quiet_wait)
    port = free_port(args.port_base, args.port_base + 200)
    env = python_env(server.pure) if server.kind == "wsdaemon" else None
    broker = None
    if server.needs_broker:  # its CPU counts as the server's, on the load generator's core
        broker = RedisBroker(free_port(args.port_base + 200, args.port_base + 300), RESULTS, LOADGEN_CPU)
    cmd = server.command(
        profile.mode,
        port,
        args.wsdaemon_src,
        BUILD,
        deflate=profile.deflate,
        broker_url=broker.url if broker else "",
    )
    running = Running(cmd, port, log, env, helpers=(broker.proc.pid,) if broker else ())
    scraper = None
    try:
        running.wait_ready()
        if server.scraped:
            scraper = Scraper(port)
        result = measure(profile, running, loadgen, args.duration, args.warmup)
        if scraper is not None:
            result["scrapes"] = scraper.stop()
        return result
    finally:
        if scraper is not None:
            scraper.stop()
        running.stop()
        if broker is not None:
            broker.stop()


class Scraper:
    """A Prometheus stand-in: GET /metrics once a second until stopped (wsdaemon+scraped)."""

    def __init__(self, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}/metrics"
        self.count = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            try:
                with urllib.request.urlopen(self.url, timeout=5) as resp:
                    resp.read()
                self.count += 1
            except OSError:
                pass

    def stop(self) -> int:
        self._stop.set()
        self._thread.join(timeout=10)
        return self.count


def main() -> int:
    args = parse_args()
    # SIGTERM unwinds like Ctrl-C, so the running server is stopped on the way out
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    build()
    raise_fd_limit()
    RESULTS.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    results = {
        "time": stamp,
        "machine": machine(),
        "duration": args.duration,
        "warmup": args.warmup,
        "repeat": args.repeat,
        "quick": args.quick,
        "servers": args.servers,
        "profiles": {
            k: {
                "title": PROFILES[k].title,
                "unit": PROFILES[k].unit,
                "lower_is_better": PROFILES[k].lower_is_better,
                "deflate": PROFILES[k].deflate,
            }
            for k in args.profiles
        },
        "cells": {s: {k: {"runs": []} for k in args.profiles} for s in args.servers},
    }
    plans = {}
    for key in args.profiles:
        plans[key], note = loadgen_args(PROFILES[key], args.quick)
        if note:
            print(f"profile {key}: {note}")
        results["profiles"][key]["loadgen"] = plans[key]
        results["profiles"][key]["note"] = note
    skipped = {}
    for name in args.servers:
        try:
            preflight(SERVERS[name], args.wsdaemon_src)
        except (Unavailable, subprocess.TimeoutExpired) as e:
            skipped[name] = str(e)
            print(f"skipping {name}: {e}")
    for rep in range(args.repeat):
        for name in args.servers:
            if name in skipped:
                continue
            for key in args.profiles:
                cell = results["cells"][name][key]
                if "skipped" in cell:
                    continue
                log = RESULTS / f"{stamp}-{name}-{key}.log"
                loadgen = [str(BUILD / "loadgen"), *plans[key]]
                for attempt in range(args.retries + 1):
                    try:
                        run = one_run(args, SERVERS[name], PROFILES[key], loadgen, log)
                    except Unavailable as e:
                        cell["skipped"] = str(e)
                        print(f"{name:18} {key}: skipped: {e}")
                        break
                    except subprocess.TimeoutExpired:
                        run = {"error": "loadgen timed out"}
                    label = f"{name:18} {key} #{rep + 1}"
                    print(f"{label}: {describe(run, PROFILES[key].unit)}", flush=True)
                    if run.get("foreign_cpu", 0) <= DISTURBED or attempt == args.retries:
                        cell["runs"].append(run)
                        break
                    # other processes took a core share: redo (one_run waits for quiet first)
    for name in args.servers:
        for key in args.profiles:
            cell = results["cells"][name][key]
            if name in skipped:
                cell["skipped"] = skipped[name]
            cell["summary"] = summarize(cell["runs"])
    path = RESULTS / f"{stamp}.json"
    save(results, path)
    print()
    print(table(results))
    for extra in (compression_table(results), peer_goals(results)):
        if extra:
            print("\n" + extra)
    print(f"\nresults: {path}")
    return 0


def describe(run: dict, unit: str) -> str:
    if "error" in run:
        return f"error: {run['error']}"
    text = human(run["value"], unit) + ("" if unit in ("B/s", "KiB/conn") else f" {unit}")
    if "server_cpu" in run:
        text += f"  (cpu: server {run['server_cpu']:.0%}, loadgen {run['loadgen_cpu']:.0%}"
        text += f", others {run['foreign_cpu']:.0%}; busy: core0 {run['core0_busy']:.0%}"
        text += f", core1 {run['core1_busy']:.0%})"
        text += " DISTURBED" if run["foreign_cpu"] > DISTURBED else ""
    if "ready" in run:
        text += (
            f"  ({run['ready']} conns in {run['connect_seconds']:.1f} s, "
            f"RSS {run['rss_baseline_kib']} -> {run['rss_held_kib']} KiB"
        )
        if run.get("verify_expected"):
            text += f", echo {run['verified']}/{run['verify_expected']}"
        text += ")"
    if "idle_kib_per_conn" in run:
        text += (
            f"  (RSS/conn idle {run['idle_kib_per_conn']:.1f}, active {run['active_kib_per_conn']:.1f}, "
            f"after {run['after_kib_per_conn']:.1f} KiB)"
        )
    if run.get("deflate") and run.get("messages"):
        text += f"  (wire B/msg out {run['wire_out_per_msg']:.0f}, in {run['wire_in_per_msg']:.0f})"
    return text


if __name__ == "__main__":
    sys.exit(main())
