"""The servers under test: how to start each one, wait for it, measure it, stop it.

Every server is started fresh for every run, pinned to core 0, in its own
session (so its RSS can be summed over any worker processes and it can be
stopped by pid). A server that cannot start raises ``Unavailable`` with a reason
the runner prints; it never crashes the run.
"""

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

BENCH = Path(__file__).resolve().parent
PEERS = BENCH / "peers"
NODE_DIR = PEERS / "node"  # package.json of the Node peer; node_modules/ installed here
SERVER_CPU = "0"
CLK_TCK = os.sysconf("SC_CLK_TCK")


class Unavailable(Exception):
    """The server cannot run here (not importable, no such mode, died at start)."""


@dataclass
class Server:
    name: str
    kind: str  # "wsdaemon", "python" (a peer script), "node" (a peer script) or "c"
    script: str = ""
    uvloop: bool = False
    extra: tuple = ()  # options found by preflight (wsdaemon: lift limits, quiet log)
    src: Path | None = None  # wsdaemon only: a tree of its own instead of --wsdaemon-src
    deflate_option: bool = False  # wsdaemon only: preflight found --compression
    deflate_extra: tuple = ()  # wsdaemon only: compression options of a variant; compressed profiles only
    processes: int = 1  # wsdaemon only: --processes N (with a broker: the runner starts a redis-server)
    broker: bool = False  # wsdaemon only: --broker on a redis-server the runner starts for the run
    scraped: bool = False  # wsdaemon only: the runner reads /metrics once a second during the run
    pure: bool = False  # wsdaemon only: WSDAEMON_PURE_PYTHON=1, the C accelerator left unused
    imports: str = ""  # python peers: what preflight imports (default: the script's name less _server.py)

    @property
    def needs_broker(self) -> bool:
        return self.broker or self.processes > 1

    def command(
        self,
        mode: str,
        port: int,
        wsdaemon_src: Path,
        build: Path,
        deflate: bool = False,
        broker_url: str = "",
    ) -> list[str]:
        """The server's command line; deflate: negotiate permessage-deflate (profiles z, zb, zi)."""
        if mode == "room" and self.kind != "wsdaemon":
            raise Unavailable(f"{self.name} has no rooms")
        if mode == "session" and self.kind != "wsdaemon":
            raise Unavailable(f"{self.name} has no resumable sessions")
        if self.kind == "wsdaemon":
            src = self.src or wsdaemon_src
            app_module = "echo" if mode == "session" else mode  # sessions: the echo app, the envelope
            if not (src / "wsdaemon" / "apps" / f"{app_module}.py").exists():
                raise Unavailable(f"no wsdaemon.apps.{app_module} in {src}")
            launcher = [sys.executable, str(BENCH / "wsdaemon_launcher.py"), str(src)]
            app = f"wsdaemon.apps.{app_module}:app"
            options = f"--host 127.0.0.1 --port {port} --app {app} --max-message-size 16777216"
            if deflate and not self.deflate_option:
                raise Unavailable("this wsdaemon has no --compression option")
            if self.deflate_extra and not deflate:
                raise Unavailable("a compression variant: same as wsdaemon without compression")
            compression = ["--compression", "on", *self.deflate_extra] if deflate else []
            procs = ["--processes", str(self.processes)] if self.processes > 1 else []
            broker = ["--broker", broker_url] if self.needs_broker else []
            return [*launcher, "run", *options.split(), *self.extra, *compression, *procs, *broker]
        if self.kind == "c":
            if mode != "echo" or deflate:
                raise Unavailable(f"{self.name} has no {'compression' if deflate else mode} mode")
            return [str(build / "c_echo"), "--port", str(port)]
        flags = ["--deflate"] if deflate else []
        if self.kind == "node":
            return ["node", str(PEERS / self.script), "--port", str(port), "--mode", mode, *flags]
        cmd = [sys.executable, str(PEERS / self.script), "--port", str(port), "--mode", mode, *flags]
        return cmd + (["--uvloop"] if self.uvloop else [])


SERVERS = {
    s.name: s
    for s in (
        Server("wsdaemon", "wsdaemon"),
        Server("wsdaemon-p2", "wsdaemon", processes=2),
        Server("wsdaemon+broker", "wsdaemon", broker=True),
        Server("wsdaemon+takeover", "wsdaemon", deflate_extra=("--compression-context-takeover", "on")),
        Server("wsdaemon+scraped", "wsdaemon", scraped=True),
        Server("wsdaemon+pure", "wsdaemon", pure=True),
        Server("websockets", "python", "websockets_server.py"),
        Server("websockets+uvloop", "python", "websockets_server.py", uvloop=True),
        Server("aiohttp", "python", "aiohttp_server.py"),
        Server("aiohttp+uvloop", "python", "aiohttp_server.py", uvloop=True),
        Server("picows+uvloop", "python", "picows_server.py", uvloop=True),
        Server("tornado", "python", "tornado_server.py"),
        Server("node-ws", "node", "node_ws_server.js"),
        Server("c_echo", "c"),
        Server("python-floor", "python", "floor_server.py", imports="select, wsdaemon.proto._speedups"),
    )
}


def preflight(server: Server, wsdaemon_src: Path) -> None:
    """Raise Unavailable early when a server cannot possibly start."""
    if server.kind == "c":
        return
    if server.kind == "node":
        node_setup()
        return
    env = None
    if server.kind == "wsdaemon":
        wsdaemon_src = server.src or wsdaemon_src
        for mode in ("echo", "broadcast"):
            if not (wsdaemon_src / "wsdaemon" / "apps" / f"{mode}.py").exists():
                raise Unavailable(f"no wsdaemon.apps.{mode} in {wsdaemon_src}")
        launcher = [sys.executable, str(BENCH / "wsdaemon_launcher.py"), str(wsdaemon_src)]
        cmd, env = [*launcher, "run", "--help"], python_env()
    else:
        module = server.imports or server.script.removesuffix("_server.py")
        cmd = [sys.executable, "-c", f"import {module}" + (", uvloop" if server.uvloop else "")]
    check = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=30)
    if check.returncode:
        lines = check.stderr.strip().splitlines() or ["failed"]
        raise Unavailable(lines[-1])
    if server.kind == "wsdaemon":
        if server.processes > 1 and "--processes" not in check.stdout:
            raise Unavailable("this wsdaemon has no --processes option")
        if server.needs_broker and "--broker" not in check.stdout:
            raise Unavailable("this wsdaemon has no --broker option")
        if server.needs_broker and not shutil.which("redis-server"):
            raise Unavailable("redis-server is not installed (apt-get install redis-server)")
        server.extra = tuple(wsdaemon_options(check.stdout))
        wanted = ["--compression", *(x for x in server.deflate_extra if x.startswith("--"))]
        server.deflate_option = all(opt in check.stdout for opt in wanted)


# Options added to the benchmark command when this wsdaemon has them: no cap on
# connections (its default cap would make (d)/(g) measure 503s) and no per-connection
# info logging (the peers run without access logs too).
WSDAEMON_OPTIONS = {"--max-connections": "0", "--max-connects-per-second": "0", "--log-level": "warning"}


NODE_WS_MODULES = ("ws", "bufferutil", "utf-8-validate")


def node_setup(directory: Path = NODE_DIR, wanted: tuple[str, ...] = NODE_WS_MODULES) -> None:
    """Install a Node peer's modules (versions pinned in ``directory``'s package.json and lock) from
    the npm registry into ``directory`` when missing, and check that node loads them."""
    if not shutil.which("node") or not shutil.which("npm"):
        raise Unavailable("node or npm not installed (apt-get install nodejs npm)")
    if not all((directory / "node_modules" / m / "package.json").exists() for m in wanted):
        out = subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund"],
            cwd=directory,
            capture_output=True,
            text=True,
            timeout=300,
        )
        if out.returncode:
            raise Unavailable(f"npm ci in {directory} failed: {out.stderr.strip()[-200:]}")
    script = "for (const m of process.argv.slice(1)) require(require('path').join(process.cwd(), 'node_modules', m))"
    check = subprocess.run(
        ["node", "-e", script, *wanted], cwd=directory, capture_output=True, text=True, timeout=30
    )
    if check.returncode:
        raise Unavailable(f"node cannot load {', '.join(wanted)}: {check.stderr.strip()[-200:]}")


def add_baseline(src: Path) -> str:
    """Register another wsdaemon tree (an earlier commit, say) as a server of its own."""
    name = "wsdaemon@baseline"
    SERVERS[name] = Server(name, "wsdaemon", src=src)
    return name


def wsdaemon_options(help_text: str) -> list[str]:
    return [x for opt, value in WSDAEMON_OPTIONS.items() if opt in help_text for x in (opt, value)]


def python_env(pure: bool = False) -> dict:
    """wsdaemon's environment: never write bytecode into the tree under test; pure: no C accelerator."""
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    env.pop("WSDAEMON_PURE_PYTHON", None)
    if pure:
        env["WSDAEMON_PURE_PYTHON"] = "1"
    return env


class RedisBroker:
    """A private redis-server on a free loopback port (no persistence) for one run, pinned to ``cpu``."""

    def __init__(self, port: int, workdir: Path, cpu: str | None) -> None:
        self.port = port
        self.url = f"redis://127.0.0.1:{port}/0"
        cmd = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        cmd += ["--dir", str(workdir), "--client-output-buffer-limit", "pubsub", "64mb", "16mb", "60"]
        self.log = workdir / f"redis-{port}.log"
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                ["taskset", "-c", cpu, *cmd] if cpu else cmd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                start_new_session=True,
            )
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise Unavailable(
                        f"redis-server did not start: {self.log.read_text(errors='replace')[-200:]}"
                    ) from None
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


class Running:
    """A started server: its process, port and log file (and the pids of helpers that count as it)."""

    def __init__(
        self,
        cmd: list[str],
        port: int,
        log: Path,
        env: dict | None,
        helpers: tuple[int, ...] = (),
        cpu: str = SERVER_CPU,
        cwd: Path | None = None,
    ):
        self.port = port
        self.log = log
        self.helpers = helpers
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(
                ["taskset", "-c", cpu, *cmd],
                env=env,
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                start_new_session=True,
            )

    def wait_ready(self, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise Unavailable(f"exited with {self.proc.returncode}: {self.log_tail()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                time.sleep(0.3)  # let it finish starting (imports after bind, first accept)
                return
            except OSError:
                time.sleep(0.05)
        raise Unavailable(f"not listening on {self.port} after {timeout:.0f} s")

    def log_tail(self) -> str:
        lines = self.log.read_text(errors="replace").strip().splitlines()
        return lines[-1] if lines else "no output"

    def pids(self) -> list[int]:
        """The server and every process it started (same session)."""
        found = []
        for entry in os.scandir("/proc"):
            if entry.name.isdigit():
                try:
                    with open(f"/proc/{entry.name}/stat") as f:
                        fields = f.read().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                if int(fields[3]) == self.proc.pid:  # field 6, session id
                    found.append(int(entry.name))
        return (found or [self.proc.pid]) + list(self.helpers)

    def rss_kib(self) -> int:
        total = 0
        for pid in self.pids():
            try:
                with open(f"/proc/{pid}/status") as f:
                    for line in f:
                        if line.startswith("VmRSS:"):
                            total += int(line.split()[1])
            except OSError:
                pass
        return total

    def cpu_seconds(self) -> float:
        total = 0
        for pid in self.pids():
            try:
                with open(f"/proc/{pid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                total += int(fields[11]) + int(fields[12])  # utime + stime
            except OSError:
                pass
        return total / CLK_TCK

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)


def proc_cpu(pid: int) -> float:
    """CPU seconds (user + system) one process has used so far; 0 once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def free_port(start: int, end: int) -> int:
    """First port in [start, end) that nothing listens on (cycles on every call)."""
    free_port.next = getattr(free_port, "next", start)
    for _ in range(end - start):
        port = free_port.next
        free_port.next = start + (port + 1 - start) % (end - start)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue
    raise RuntimeError(f"no free port in {start}..{end}")
