"""Instructions the daemon executes per echoed message (callgrind), raw echo against session echo.

    python bench/echo_cost.py                          # a, h, b, hb from this tree; 2 s and 6 s windows
    python bench/echo_cost.py --src /work/main --profiles a,h --windows 3,9
    python bench/echo_cost.py --daemon-option=--ping-interval=0 --daemon-option=--idle-timeout=0

The daemon (echo application) runs under ``valgrind --tool=callgrind --instr-atstart=no``; for each
profile (the loadgen arguments of bench/profiles.py) bench/build/loadgen connects with ``--pause``,
then collection is switched on for its measure window only, so the handshakes are not counted. Two
windows of different lengths give the marginal Ir per message; each window's own Ir per message is
printed too. Under callgrind the daemon runs ~50x slower while its timers keep wall-clock time: what
it does per second (keepalive and idle sweeps, a session's ack at most a second after a message)
weighs ~50x more per message than at full speed, most in b and hb (1000 connections, a few messages
per connection per second). bench/build/loadgen is built by bench/run.py.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import tempfile
from pathlib import Path

from handshake_cost import BENCH, callgrind_window, daemon_command, free_port, stop, wait_for_port
from profiles import PROFILES

LOADGEN = BENCH / "build" / "loadgen"


def _echo_window(pid: int, out: Path, port: int, args: list[str], seconds: float) -> tuple[int, int]:
    """Connect (not counted), then (Ir, messages) of a ``seconds`` echo window."""
    cmd = [str(LOADGEN), "--port", str(port), "--duration", str(seconds), "--warmup", "0"]
    lg = subprocess.Popen(
        [*cmd, "--pause", "--hold", "600", *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert lg.stdin is not None and lg.stdout is not None
    ready = lg.stdout.readline()
    if "ready" not in ready:
        raise RuntimeError(f"loadgen: {ready}")

    def traffic() -> dict:
        lg.stdin.write("\n")  # the pause ends: traffic
        lg.stdin.flush()
        return json.loads(lg.stdout.readline())

    ir, result = callgrind_window(pid, out, traffic)
    lg.stdin.write("\n")  # then it closes
    lg.stdin.flush()
    lg.wait(300)
    return ir, result["messages"]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--src", type=Path, default=BENCH.parent, help="the wsdaemon tree to run")
    parser.add_argument("--profiles", default="a,h,b,hb")
    parser.add_argument("--windows", default="2,6", help="two window lengths, seconds")
    parser.add_argument("--daemon-option", action="append", default=[], help="an extra daemon option")
    args = parser.parse_args()
    if not shutil.which("valgrind") or not LOADGEN.exists():
        raise SystemExit("needs valgrind and bench/build/loadgen (built by bench/run.py)")
    short, long = (float(x) for x in args.windows.split(","))
    port = free_port()
    workdir = Path(tempfile.mkdtemp(prefix="echo-callgrind-"))
    out = workdir / "callgrind.out"
    valgrind = ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}"]
    proc = subprocess.Popen(
        [*valgrind, *daemon_command(args.src, port), *args.daemon_option], stdin=subprocess.DEVNULL
    )
    per: dict[str, float] = {}
    try:
        wait_for_port(port, proc, 300)
        for key in args.profiles.split(","):
            loadgen = PROFILES[key].loadgen
            _echo_window(proc.pid, out, port, loadgen, 1)  # warm up: first-use imports and caches
            ir1, m1 = _echo_window(proc.pid, out, port, loadgen, short)
            ir2, m2 = _echo_window(proc.pid, out, port, loadgen, long)
            per[key] = (ir2 - ir1) / (m2 - m1)
            print(f"{key}: {per[key]:,.0f} Ir/msg (windows: {ir1 / m1:,.0f} and {ir2 / m2:,.0f})", flush=True)
    finally:
        stop(proc)
        shutil.rmtree(workdir, ignore_errors=True)
    for session, raw in (("h", "a"), ("hb", "b")):
        if session in per and raw in per:
            print(f"{session}/{raw}: {per[session] / per[raw]:.2f}")


if __name__ == "__main__":
    main()
