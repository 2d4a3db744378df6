"""Start the real daemon as a process for end-to-end tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_for_port(host: str, port: int, timeout: float = 10.0, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"daemon exited with {proc.returncode}")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on {host}:{port}")


class Daemon:
    """``wsdaemon run`` in a subprocess, with its log captured to a file."""

    def __init__(
        self,
        *args: str,
        app: str = "wsdaemon.apps.echo:app",
        env: dict | None = None,
        cwd: str | None = None,
        host: str = "127.0.0.1",
        port: int | None = None,
        connect_rate: bool = False,
    ) -> None:
        """``connect_rate``: keep the daemon's default ``max_connects_per_second``. Without it the limit
        is off (``WSDAEMON_MAX_CONNECTS_PER_SECOND=0``): the tests' clients all come from a few
        loopback addresses and many open hundreds of connections a second. A ``--max-connects-*``
        argument still applies (the command line wins over the environment)."""
        self.host = host
        self.port = port or free_port(host)
        self.log_file = tempfile.NamedTemporaryFile(prefix="wsdaemon-", suffix=".log", delete=False)
        full_env = dict(os.environ)
        full_env["PYTHONPATH"] = os.pathsep.join([str(REPO), full_env.get("PYTHONPATH", "")])
        if not connect_rate:
            full_env["WSDAEMON_MAX_CONNECTS_PER_SECOND"] = "0"
        full_env.update(env or {})
        self.cmd = [
            sys.executable,
            "-m",
            "wsdaemon",
            "run",
            "--host",
            host,
            "--port",
            str(self.port),
            "--app",
            app,
            "--log-level",
            "debug",
            *args,
        ]
        self.proc = subprocess.Popen(
            self.cmd, stdout=self.log_file, stderr=subprocess.STDOUT, env=full_env, cwd=cwd or str(REPO)
        )
        wait_for_port(host, self.port, proc=self.proc)

    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self.port}/"

    @property
    def http_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def log(self) -> str:
        return Path(self.log_file.name).read_text(errors="replace")

    def wait_for_log(self, text: str, timeout: float = 10.0) -> str:
        """The log once it contains ``text`` (the port can accept before a line is written)."""
        deadline = time.monotonic() + timeout
        while text not in (log := self.log()):
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} not in the daemon log:\n{log[-2000:]}")
            time.sleep(0.05)
        return log

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode
