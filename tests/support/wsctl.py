"""Drive ``wsdaemon start|stop|restart|status|...`` as real processes, for the daemon-operation tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from tests.support.daemon_process import REPO, free_port
from wsdaemon.daemon.pidfile import process_exists


def clean_env(extra: dict | None = None) -> dict:
    """The environment for a wsdaemon command: no stray ``WSDAEMON_*``, the checkout first."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WSDAEMON_")}
    env.pop("NOTIFY_SOCKET", None)
    env["PYTHONPATH"] = str(REPO)
    env.update(extra or {})
    return env


def wait_until(condition: Callable[[], object], timeout: float = 15.0, what: str = "condition") -> object:
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.02)


class Service:
    """One daemon's command line: a free port, a pid file and a log file under ``tmp``."""

    def __init__(
        self,
        tmp: Path,
        *extra: str,
        app: str = "wsdaemon.apps.echo:app",
        host: str = "127.0.0.1",
        port: int | None = None,
        pidfile: bool = True,
        logfile: bool = True,
    ) -> None:
        self.tmp = Path(tmp)
        self.host = host
        self.port = port or free_port(host)
        self.pidfile = self.tmp / f"wsdaemon-{self.port}.pid"
        self.logfile = self.tmp / f"wsdaemon-{self.port}.log"
        self.options = ["--host", host, "--port", str(self.port), "--app", app, *extra]
        if pidfile:
            self.options += ["--pidfile", str(self.pidfile)]
        if logfile:
            self.options += ["--logfile", str(self.logfile)]
        self.pids: set[int] = set()

    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self.port}/"

    def cli(self, command: str, *args: str, env: dict | None = None, options: bool = True):
        """Run ``wsdaemon COMMAND [options] [args]``; a CompletedProcess with text output."""
        cmd = [sys.executable, "-m", "wsdaemon", command, *(self.options if options else []), *args]
        proc = subprocess.run(
            cmd, capture_output=True, text=True, env=clean_env(env), cwd=str(self.tmp), timeout=90
        )
        if command in ("start", "restart") and proc.returncode == 0 and self.pidfile.exists():
            self.pids.add(self.pid())
        return proc

    def start(self, *args: str, **kwargs) -> int:
        proc = self.cli("start", *args, **kwargs)
        assert proc.returncode == 0, (proc.stdout, proc.stderr, self.log())
        return self.pid()

    def pid(self) -> int:
        return int(self.pidfile.read_text().split()[0])

    def log(self) -> str:
        return self.logfile.read_text(errors="replace") if self.logfile.exists() else ""

    def wait_log(self, text: str, timeout: float = 15.0) -> None:
        wait_until(lambda: text in self.log(), timeout, f"{text!r} in {self.logfile}")

    def kill_all(self) -> None:
        """Teardown: no daemon of this test survives it."""
        if self.pidfile.exists():
            try:
                self.pids.add(self.pid())
            except ValueError:
                pass
        for pid in self.pids:
            if process_exists(pid):
                os.kill(pid, signal.SIGKILL)
