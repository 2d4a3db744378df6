"""The benchmark profiles (a)-(g), (r), z, zb, zi: loadgen arguments, server mode, and the figure.

A profile is data; ``measure`` runs the load generator against a started server
and turns its JSON into one number (plus details kept in the results file).
Throughput profiles are timed by the load generator after a warm-up; memory
profiles read the server's RSS before and while the connections are held; (z)
does both: RSS before, with the connections idle, during and after traffic.
"""

import json
import math
import resource
import subprocess
import time
from dataclasses import dataclass, field

from servers import CLK_TCK, Running, proc_cpu

LOADGEN_CPU = "1"


@dataclass
class Profile:
    key: str
    title: str
    mode: str  # server mode: "echo", "broadcast" or "room" (wsdaemon only)
    loadgen: list[str]  # loadgen arguments besides --port/--duration/--warmup
    unit: str
    lower_is_better: bool = False
    quick: list[str] = field(default_factory=list)  # overrides for --quick

    @property
    def idle(self) -> bool:
        return "idle" in self.loadgen

    @property
    def deflate(self) -> bool:
        """The client offers permessage-deflate: the server is started with compression on."""
        return "--deflate" in self.loadgen

    @property
    def paused(self) -> bool:
        return "--pause" in self.loadgen


def max_idle_connections(wanted: int) -> tuple[int, str]:
    """Connections (g) can hold: each side needs one descriptor per connection."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    cap = hard - 200
    if wanted <= cap:
        return wanted, ""
    return cap, f"capped at {cap} by RLIMIT_NOFILE hard limit {hard} (asked for {wanted})"


PROFILES = {
    p.key: p
    for p in (
        Profile(
            "a",
            "100 conns, 32 B text, 10 in flight",
            "echo",
            ["--mode", "echo", "--conns", "100", "--size", "32", "--inflight", "10"],
            "msg/s",
        ),
        Profile(
            "b",
            "1000 conns, 32 B text, 1 in flight",
            "echo",
            ["--mode", "echo", "--conns", "1000", "--size", "32", "--inflight", "1"],
            "msg/s",
        ),
        Profile(
            "c",
            "10 conns, 1 MiB binary, 1 in flight",
            "echo",
            ["--mode", "echo", "--conns", "10", "--size", "1048576", "--binary", "--inflight", "1"],
            "B/s",
        ),
        Profile(
            "d",
            "10,000 idle conns: server RSS per conn",
            "echo",
            ["--mode", "idle", "--conns", "10000"],
            "KiB/conn",
            lower_is_better=True,
            quick=["--conns", "1000"],
        ),
        Profile(
            "e",
            "handshake + close, 50 loops",
            "echo",
            ["--mode", "handshake", "--loops", "50"],
            "hs/s",
        ),
        Profile(
            "f",
            "broadcast to 1000 conns, 32 B, 10 in flight",
            "broadcast",
            ["--mode", "broadcast", "--conns", "1000", "--size", "32", "--inflight", "10"],
            "deliv/s",
            quick=["--conns", "200"],
        ),
        Profile(
            "r",
            "room publish to 1000 members, 32 B, 10 in flight",
            "room",
            ["--mode", "broadcast", "--conns", "1000", "--size", "32", "--inflight", "10"],
            "deliv/s",
            quick=["--conns", "200"],
        ),
        Profile(
            "g",
            "100,000 idle conns, several source addresses: RSS per conn, echo check",
            "echo",
            ["--mode", "idle", "--conns", "100000", "--verify", "10"],
            "KiB/conn",
            lower_is_better=True,
            quick=["--conns", "3000"],
        ),
        Profile(
            "z",
            "1000 conns, 200 B JSON game states, permessage-deflate, 1 in flight",
            "echo",
            ["--mode", "echo", "--conns", "1000", "--size", "200", "--inflight", "1", "--deflate", "--pause"],
            "msg/s",
            quick=["--conns", "200"],
        ),
        Profile(
            "zb",
            "broadcast to 1000 conns, 200 B JSON, permessage-deflate, 10 in flight",
            "broadcast",
            ["--mode", "broadcast", "--conns", "1000", "--size", "200", "--inflight", "10", "--deflate"],
            "deliv/s",
            quick=["--conns", "200"],
        ),
        Profile(
            "zi",
            "10,000 idle conns with permessage-deflate negotiated: server RSS per conn (compare d)",
            "echo",
            ["--mode", "idle", "--conns", "10000", "--deflate"],
            "KiB/conn",
            lower_is_better=True,
            quick=["--conns", "1000"],
        ),
        Profile(
            "h",
            "as a, through a resumable session (the JS client's envelope; wsdaemon only)",
            "session",
            ["--mode", "echo", "--conns", "100", "--size", "32", "--inflight", "10", "--session"],
            "msg/s",
        ),
        Profile(
            "hb",
            "as b, through a resumable session (wsdaemon only)",
            "session",
            ["--mode", "echo", "--conns", "1000", "--size", "32", "--inflight", "1", "--session"],
            "msg/s",
        ),
    )
}


def loadgen_args(profile: Profile, quick: bool) -> tuple[list[str], str]:
    """Final loadgen arguments for a profile, and a note when a limit changed them."""
    args = list(profile.loadgen)
    if quick:
        for i in range(0, len(profile.quick), 2):
            args[args.index(profile.quick[i]) + 1] = profile.quick[i + 1]
    note = f"quick: {' '.join(profile.quick)}" if quick and profile.quick else ""
    if profile.idle:
        i = args.index("--conns") + 1
        conns, capped = max_idle_connections(int(args[i]))
        note = "; ".join(n for n in (note, capped) if n)
        args[i] = str(conns)
        # ~28k ephemeral ports per (source, destination) pair: spread over 127.0.0.2...
        args += ["--sources", str(max(2, math.ceil(conns / 20000)))]
    return args, note


def run_loadgen(cmd: list[str], timeout: float) -> tuple[dict, float]:
    """Run the load generator to completion; its last JSON line and its CPU seconds."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return parse_result(out.stdout, out.stderr), cpu


def parse_result(stdout: str, stderr: str = "") -> dict:
    lines = [line for line in stdout.splitlines() if line.startswith("{")]
    if not lines:
        return {"error": f"no result from loadgen: {stderr.strip()[-200:]}"}
    return json.loads(lines[-1])


def measure(profile: Profile, server: Running, loadgen: list[str], duration: float, warmup: float) -> dict:
    """One run of a profile against a fresh server; returns {"value": ..., ...details}."""
    base = ["taskset", "-c", LOADGEN_CPU, *loadgen, "--port", str(server.port)]
    if profile.idle:
        return measure_idle(server, base)
    cmd = base + ["--duration", str(duration), "--warmup", str(warmup)]
    if profile.paused:
        result = measure_paused(server, cmd, duration, warmup)
    else:
        cpu0, cores0, t0 = server.cpu_seconds(), core_times(), time.monotonic()
        result, loadgen_cpu = run_loadgen(cmd, timeout=120 + duration + warmup)
        add_cpu(result, server, cpu0, cores0, loadgen_cpu, time.monotonic() - t0)
    result.setdefault("error", wrong(result))
    if not result["error"]:
        del result["error"]
        result["value"] = result["bytes_per_s"] if profile.unit == "B/s" else result["rate"]
    return result


def add_cpu(
    result: dict, server: Running, cpu0: float, cores0: dict, loadgen_cpu: float, wall: float
) -> None:
    """CPU shares over wall seconds since (cpu0, cores0): server, loadgen, others, each core."""
    server_cpu = server.cpu_seconds() - cpu0
    result["server_cpu"] = round(server_cpu / wall, 3)
    result["loadgen_cpu"] = round(loadgen_cpu / wall, 3)
    cores1 = core_times()
    for core in "01":  # whole-core load, softirq included: which side is saturated
        result[f"core{core}_busy"] = round((cores1[core][1] - cores0[core][1]) / wall, 3)
    processes = sum(cores1[c][0] - cores0[c][0] for c in "01")
    foreign = processes - server_cpu - loadgen_cpu
    result["foreign_cpu"] = round(max(0.0, foreign) / wall, 3)


def measure_paused(server: Running, cmd: list[str], duration: float, warmup: float) -> dict:
    """Throughput plus server RSS: before, with the connections open and idle, in the
    middle of the measured traffic, and one second after it (connections still open).

    The KiB/conn figures are (RSS then - RSS before) / connections.
    """
    baseline = server.rss_kib()
    proc = subprocess.Popen(
        cmd + ["--hold", "120", "--timeout", str(240 + duration + warmup)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        ready = parse_result(proc.stdout.readline())
        if "ready" not in ready:
            proc.kill()
            proc.communicate(timeout=10)
            return ready
        time.sleep(1.0)  # as in measure_idle: let the server settle
        idle = server.rss_kib()
        cpu0, cores0, t0, lg0 = server.cpu_seconds(), core_times(), time.monotonic(), proc_cpu(proc.pid)
        proc.stdin.write("go\n")
        proc.stdin.flush()
        time.sleep(warmup + duration / 2)
        active = server.rss_kib()
        result = parse_result(proc.stdout.readline())  # loadgen prints it when the measurement ends
        add_cpu(result, server, cpu0, cores0, proc_cpu(proc.pid) - lg0, time.monotonic() - t0)
        time.sleep(1.0)
        after = server.rss_kib()
        out, err = proc.communicate("go\n", timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        return {"error": "loadgen timed out"}
    conns = max(1, ready["ready"])
    result.update(
        rss_baseline_kib=baseline,
        rss_idle_kib=idle,
        rss_active_kib=active,
        rss_after_kib=after,
        idle_kib_per_conn=round((idle - baseline) / conns, 2),
        active_kib_per_conn=round((active - baseline) / conns, 2),
        after_kib_per_conn=round((after - baseline) / conns, 2),
    )
    if "messages" in result:
        result["compressed_share"] = round(result.get("compressed_in", 0) / max(1, result["messages"]), 3)
    return result


def wrong(result: dict) -> str:
    """What makes a throughput run invalid: any protocol fault, lost connection, or
    (handshake loops) more than 1% failed cycles."""
    faults = ["protocol_errors", "size_errors", "content_errors", "deflate_declined"]
    if result.get("mode") != "handshake":
        faults += ["closed_by_server", "connect_errors", "handshake_errors"]
    found = [f"{k}={result[k]}" for k in faults if result.get(k)]
    failed = result.get("connect_errors", 0) + result.get("handshake_errors", 0)
    if result.get("mode") == "handshake" and failed > 0.01 * max(1, result.get("messages", 0)):
        found.append(f"failed cycles={failed}")
    return ", ".join(found)


def core_times() -> dict:
    """Per core (0 and 1): (seconds in processes, seconds busy in all) from /proc/stat.

    Process time is user + nice + system; busy adds irq and softirq, where much of
    loopback TCP work lands (the kernel charges it to no process).
    """
    times = {}
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith(("cpu0 ", "cpu1 ")):
                v = [int(x) for x in line.split()[1:8]]
                times[line[3]] = ((v[0] + v[1] + v[2]) / CLK_TCK, (sum(v) - v[3] - v[4]) / CLK_TCK)
    return times


def cores_busy() -> float:
    """CPU seconds spent in processes on cores 0 and 1 (user + nice + system).

    Minus the server's and the load generator's own time, this is what other
    processes took from the benchmark: on a shared 2-core machine a run with a
    large foreign share is disturbed and is retried by the runner.
    """
    return sum(proc for proc, _ in core_times().values())


def measure_idle(server: Running, cmd: list[str]) -> dict:
    """Hold the connections, read RSS while they are open, then let loadgen verify."""
    baseline = server.rss_kib()
    proc = subprocess.Popen(
        cmd + ["--hold", "120", "--timeout", "240"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        ready = parse_result(proc.stdout.readline())
        if "ready" not in ready:
            proc.kill()
            return ready
        time.sleep(1.0)  # let the server settle (buffers freed, last callbacks run)
        held = server.rss_kib()
        out, err = proc.communicate("go\n", timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        return {"error": "loadgen timed out"}
    result = parse_result(out, err)
    if ready.get("deflate_answer"):
        result["deflate_answer"] = ready["deflate_answer"]
    result.update(
        ready=ready["ready"],
        connect_seconds=ready["connect_seconds"],
        rss_baseline_kib=baseline,
        rss_held_kib=held,
    )
    if ready["ready"]:
        result["value"] = (held - baseline) / ready["ready"]
    if ready["ready"] < result.get("conns", 0):
        result["error"] = f"only {ready['ready']} of {result['conns']} connections held"
    elif result.get("verify_expected", 0) and result.get("verified") != result["verify_expected"]:
        result["error"] = f"echo check: {result.get('verified')} of {result['verify_expected']}"
    return result
