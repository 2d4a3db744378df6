"""What one connect-upgrade-close cycle (profile e) costs the daemon: syscalls, instructions, calls.

    python bench/handshake_cost.py                       # strace and callgrind, 2000 cycles, this tree
    python bench/handshake_cost.py --src /work/main --measure strace --cycles 5000
    python bench/handshake_cost.py --measure profile     # cProfile: calls per cycle, top functions

The daemon (echo application, the benchmark's options) runs from ``--src``; a Python client makes
exactly ``--cycles`` cycles, ``--concurrency`` at a time: connect, upgrade, a close frame, wait for
the server's close and EOF, close. Counting starts after the daemon is up and stops after the last
cycle; an idle window of the same length, measured the same way, is subtracted (the daemon's timers).

- strace: ``strace -c -f`` attached to the daemon's threads for the window; syscalls per cycle by name.
- callgrind: the daemon under ``valgrind --tool=callgrind --instr-atstart=no``, instrumentation switched
  on with ``callgrind_control`` for the window; instructions (Ir) per cycle, repeatable to about 0.1%.
- profile: the daemon under cProfile; Python calls per cycle and the functions that take the most.
- loadgen: profile (e) itself at full speed (bench/build/loadgen, 50 loops, daemon on core 0, load
  generator on core 1) with ``perf stat`` counting the daemon's syscall tracepoints: syscalls per cycle
  as the benchmark makes them (batched: several connections per ``epoll_wait``), and cycles/s.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
DAEMON_OPTIONS = ["--max-connections", "0", "--max-connects-per-second", "0", "--log-level", "warning"]
CLOSE_FRAME = bytes((0x88, 0x82)) + b"\x01\x02\x03\x04" + bytes((0x03 ^ 0x01, 0xE8 ^ 0x02))


# -- the client ---------------------------------------------------------------


class _Cycle:
    """One connection of the client: connect, upgrade, close, wait for the server's close and EOF."""

    __slots__ = ("sock", "state", "buf")

    def __init__(self, port: int, request: bytes) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setblocking(False)
        self.sock.connect_ex(("127.0.0.1", port))
        self.state = "connecting"
        self.buf = request


def run_cycles(port: int, cycles: int, concurrency: int) -> float:
    """Make ``cycles`` complete cycles, ``concurrency`` at a time; returns the seconds it took."""
    key = base64.b64encode(os.urandom(16))
    request = (
        b"GET / HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n" % (port, key)
    )
    sel = selectors.DefaultSelector()
    started = done = 0
    t0 = time.monotonic()

    def start() -> None:
        nonlocal started
        started += 1
        c = _Cycle(port, request)
        sel.register(c.sock, selectors.EVENT_WRITE, c)

    for _ in range(min(concurrency, cycles)):
        start()
    while done < cycles:
        for key_, _mask in sel.select(10):
            c = key_.data
            if c.state == "connecting":
                err = c.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    raise OSError(err, os.strerror(err))
                c.sock.send(c.buf)
                c.state, c.buf = "upgrading", b""
                sel.modify(c.sock, selectors.EVENT_READ, c)
                continue
            data = c.sock.recv(65536)
            c.buf += data
            if c.state == "upgrading":
                end = c.buf.find(b"\r\n\r\n")
                if end < 0:
                    if not data:
                        raise RuntimeError("EOF before the 101")
                    continue
                if not c.buf.startswith(b"HTTP/1.1 101 "):
                    raise RuntimeError(f"no 101: {c.buf[:80]!r}")
                c.buf = c.buf[end + 4 :]
                c.sock.send(CLOSE_FRAME)
                c.state = "closing"
            if c.state == "closing" and data == b"":
                if c.buf[:1] != b"\x88":
                    raise RuntimeError(f"EOF without the server's close frame: {c.buf!r}")
                sel.unregister(c.sock)
                c.sock.close()
                done += 1
                if started < cycles:
                    start()
    sel.close()
    return time.monotonic() - t0


# -- the daemon ---------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def daemon_command(src: Path, port: int) -> list[str]:
    launcher = [sys.executable, str(BENCH / "wsdaemon_launcher.py"), str(src)]
    app = ["--host", "127.0.0.1", "--port", str(port), "--app", "wsdaemon.apps.echo:app"]
    return [*launcher, "run", *app, *DAEMON_OPTIONS]


def wait_for_port(port: int, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the daemon exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"the daemon did not listen on {port} within {timeout} s")


def start_daemon(cmd: list[str], port: int, timeout: float = 20) -> subprocess.Popen:
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1", PYTHONHASHSEED="0")
    proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL)
    wait_for_port(port, proc, timeout)
    run_cycles(port, 200, 1)  # warm up: first-use imports and caches are not a cycle's cost
    return proc


def stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# -- strace -------------------------------------------------------------------


def strace_window(pid: int, action) -> tuple[dict[str, int], float]:
    """Syscall counts of ``pid``'s threads while ``action()`` runs (it returns the seconds it took)."""
    tids = [p for p in os.listdir(f"/proc/{pid}/task")]
    with tempfile.NamedTemporaryFile("r", suffix=".strace") as out:
        cmd = ["strace", "-c", "-f", "-o", out.name] + [x for t in tids for x in ("-p", t)]
        tracer = subprocess.Popen(cmd, stderr=subprocess.DEVNULL)
        time.sleep(1.0)  # attached
        seconds = action()
        time.sleep(0.3)
        tracer.send_signal(signal.SIGINT)
        tracer.wait(30)
        return parse_strace(out.read()), seconds


def parse_strace(text: str) -> dict[str, int]:
    counts = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 5 and parts[0][0].isdigit() and parts[-1] != "total":
            counts[parts[-1]] = int(parts[3])
    return counts


def measure_strace(src: Path, cycles: int, concurrency: int) -> dict[str, float]:
    port = free_port()
    proc = start_daemon(daemon_command(src, port), port)
    try:
        busy, seconds = strace_window(proc.pid, lambda: run_cycles(port, cycles, concurrency))
        idle, _ = strace_window(proc.pid, lambda: time.sleep(seconds) or seconds)
    finally:
        stop(proc)
    names = sorted(set(busy) | set(idle))
    per = {n: (busy.get(n, 0) - idle.get(n, 0)) / cycles for n in names}
    return {n: v for n, v in per.items() if abs(v) >= 0.005}


# -- callgrind ----------------------------------------------------------------


def callgrind_window(pid: int, out: Path, action) -> tuple[int, Any]:
    """Instructions the daemon executes while ``action()`` runs (collection on only meanwhile), and
    what ``action`` returned."""
    for f in out.parent.glob(out.name + "*"):
        f.unlink()
    control = ["callgrind_control"]
    subprocess.run([*control, "--instr=on", str(pid)], check=True, capture_output=True)
    subprocess.run([*control, "--zero", str(pid)], check=True, capture_output=True)
    result = action()
    subprocess.run([*control, "--dump", str(pid)], check=True, capture_output=True)
    subprocess.run([*control, "--instr=off", str(pid)], check=True, capture_output=True)
    dumps = sorted(out.parent.glob(out.name + ".*"), key=lambda p: p.stat().st_mtime)
    text = dumps[-1].read_text(errors="replace")
    match = re.search(r"^(?:summary|totals): (\d+)", text, re.M)
    if not match:
        raise RuntimeError(f"no totals in {dumps[-1]}")
    return int(match.group(1)), result


def measure_callgrind(src: Path, cycles: int, concurrency: int, keep: Path | None) -> dict[str, float]:
    if not shutil.which("valgrind"):
        raise SystemExit("valgrind is not installed")
    port = free_port()
    workdir = Path(tempfile.mkdtemp(prefix="hs-callgrind-"))
    out = workdir / "callgrind.out"
    cmd = ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}"]
    proc = start_daemon([*cmd, *daemon_command(src, port)], port, timeout=300)
    try:
        busy, seconds = callgrind_window(proc.pid, out, lambda: run_cycles(port, cycles, concurrency))
        if keep is not None:
            dumps = sorted(out.parent.glob(out.name + ".*"), key=lambda p: p.stat().st_mtime)
            shutil.copy(dumps[-1], keep)
        idle, _ = callgrind_window(proc.pid, out, lambda: time.sleep(seconds) or seconds)
    finally:
        stop(proc)
        shutil.rmtree(workdir, ignore_errors=True)
    return {"Ir per cycle": (busy - idle) / cycles, "idle Ir/s": idle / seconds, "seconds": seconds}


# -- cProfile -----------------------------------------------------------------


def measure_profile(src: Path, cycles: int, concurrency: int, top: int, keep: Path | None) -> None:
    import pstats

    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        stats_file = Path(tmp) / "daemon.prof"
        cmd = daemon_command(src, port)
        cmd = [cmd[0], "-m", "cProfile", "-o", str(stats_file), *cmd[1:]]
        proc = start_daemon(cmd, port)
        run_cycles(port, cycles, concurrency)
        stop(proc)
        stats = pstats.Stats(str(stats_file))
        if keep is not None:
            shutil.copy(stats_file, keep)
    total_calls = stats.total_calls  # type: ignore[attr-defined]
    print(
        f"Python calls per cycle (warm-up and start included, /{cycles + 200}): {total_calls / (cycles + 200):.0f}"
    )
    stats.sort_stats("tottime").print_stats(top)


# -- profile (e) at full speed, syscalls counted by perf ---------------------------

PERF_SYSCALLS = (
    "accept4 epoll_wait epoll_ctl recvfrom sendto close shutdown getsockname ioctl setsockopt getsockopt"
).split()


def measure_loadgen(src: Path, seconds: float) -> tuple[float, dict[str, float]]:
    """Cycles/s of profile (e) and the daemon's syscalls per cycle meanwhile (perf tracepoints)."""
    sys.path.insert(0, str(BENCH))
    import run as bench_run

    bench_run.build()
    port = free_port()
    proc = start_daemon(["taskset", "-c", "0", *daemon_command(src, port)], port)
    events = ["raw_syscalls:sys_enter", *(f"syscalls:sys_enter_{name}" for name in PERF_SYSCALLS)]
    loadgen = [str(BENCH / "build" / "loadgen"), "--mode", "handshake", "--loops", "50", "--port", str(port)]
    loadgen += ["--duration", str(seconds), "--warmup", "0"]
    cpu_before = cpu_times(proc.pid)
    try:
        with tempfile.NamedTemporaryFile("r", suffix=".perf") as out:
            cmd = ["perf", "stat", "-x", ",", "-o", out.name, "-e", ",".join(events), "-p", str(proc.pid)]
            done = subprocess.run(
                [*cmd, "--", "taskset", "-c", "1", *loadgen], capture_output=True, text=True, check=True
            )
            counts = {}
            for line in out.read().splitlines():
                fields = line.split(",")
                if len(fields) > 2 and fields[0].isdigit():
                    counts[fields[2].rpartition("sys_enter_")[2].replace("raw_syscalls:sys_enter", "all")] = (
                        int(fields[0])
                    )
        user, system = (after - before for after, before in zip(cpu_times(proc.pid), cpu_before, strict=True))
    finally:
        stop(proc)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    cycles = result["messages"]
    per = {name: n / cycles for name, n in counts.items()}
    per["user_us"], per["system_us"] = user / cycles * 1e6, system / cycles * 1e6
    faults = {k: result.get(k) for k in ("connect_errors", "handshake_errors", "slow_cycles", "max_cycle_ms")}
    print(f"loadgen: {faults}")
    return cycles / seconds, per


def cpu_times(pid: int) -> tuple[float, float]:
    """User and system CPU seconds of ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--src", type=Path, default=BENCH.parent, help="the wsdaemon tree to measure")
    parser.add_argument("--cycles", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=1, help="cycles in flight at once")
    parser.add_argument("--measure", default="strace,callgrind", help="strace, callgrind, profile")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of the loadgen run")
    parser.add_argument("--keep-callgrind", type=Path, help="save the cycles' callgrind dump here")
    parser.add_argument("--keep-profile", type=Path, help="save the cProfile stats here")
    parser.add_argument("--top", type=int, default=30, help="functions listed by --measure profile")
    args = parser.parse_args()
    src = args.src.resolve()
    print(f"{src}: {args.cycles} cycles, {args.concurrency} at a time")
    for what in args.measure.split(","):
        if what == "strace":
            per = measure_strace(src, args.cycles, args.concurrency)
            total = sum(per.values())
            listed = ", ".join(f"{name} {n:.2f}" for name, n in sorted(per.items(), key=lambda kv: -kv[1]))
            print(f"syscalls per cycle: {total:.2f} ({listed})")
        elif what == "callgrind":
            figures = measure_callgrind(src, args.cycles, args.concurrency, args.keep_callgrind)
            print(
                f"instructions per cycle: {figures['Ir per cycle']:,.0f} "
                f"(idle {figures['idle Ir/s']:,.0f} Ir/s subtracted, window {figures['seconds']:.1f} s)"
            )
        elif what == "loadgen":
            rate, per = measure_loadgen(src, args.seconds)
            total = per.pop("all", 0.0)
            user, system = per.pop("user_us"), per.pop("system_us")
            listed = ", ".join(
                f"{name} {n:.2f}" for name, n in sorted(per.items(), key=lambda kv: -kv[1]) if n
            )
            print(
                f"profile e at full speed: {rate:,.0f} cycles/s; syscalls per cycle: {total:.2f} ({listed}); "
                f"daemon CPU per cycle: {user:.1f} us user, {system:.1f} us system"
            )
        elif what == "profile":
            measure_profile(src, args.cycles, args.concurrency, args.top, args.keep_profile)
        else:
            parser.error(f"unknown measure {what!r}")


if __name__ == "__main__":
    main()
