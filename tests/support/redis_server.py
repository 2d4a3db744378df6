"""A private redis-server (Debian's package) on a free loopback port, for the broker tests.

Never the system service and never a mock: ``redis-server`` started with its
configuration on the command line (no persistence, bound to 127.0.0.1, a Unix
socket in a temporary directory), stopped by its pid. ``pause()`` stops it for a
while (SIGSTOP) and ``kill()`` / ``start()`` take it away and bring it back on
the same port, which is how the tests make the broker go away.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from tests.support.daemon_process import free_port, wait_for_port


def redis_binary() -> str:
    for candidate in ("redis-server", "/usr/bin/redis-server"):
        path = shutil.which(candidate)
        if path:
            return path
    raise RuntimeError(
        "redis-server is not installed: bash tests/install-deps.sh installs Debian's redis-server"
    )


class RedisServer:
    """redis-server on 127.0.0.1:``port`` and on ``unix_path``; ``password`` turns on requirepass."""

    def __init__(self, directory: Path, password: str | None = None, tls: bool = False) -> None:
        self.directory = directory
        self.port = free_port()
        self.unix_path = str(directory / "redis.sock")
        self.password = password
        self.tls_port = free_port() if tls else 0
        self.ca_file = ""
        if tls:
            import trustme

            ca = trustme.CA()
            cert = ca.issue_cert("127.0.0.1", "localhost")
            self.ca_file = str(directory / "ca.pem")
            ca.cert_pem.write_to_path(self.ca_file)
            cert.cert_chain_pems[0].write_to_path(directory / "cert.pem")
            cert.private_key_pem.write_to_path(directory / "key.pem")
        self.proc: subprocess.Popen | None = None
        self.start()

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    @property
    def tls_url(self) -> str:
        return f"rediss://127.0.0.1:{self.tls_port}/0?ssl_ca_certs={self.ca_file}"

    def start(self) -> None:
        args = [
            redis_binary(),
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--unixsocket", self.unix_path,
            "--unixsocketperm", "700",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.directory),
            "--logfile", str(self.directory / "redis.log"),
            "--daemonize", "no",
        ]  # fmt: skip
        if self.password:
            args += ["--requirepass", self.password]
        if self.tls_port:
            args += [
                "--tls-port", str(self.tls_port),
                "--tls-cert-file", str(self.directory / "cert.pem"),
                "--tls-key-file", str(self.directory / "key.pem"),
                "--tls-ca-cert-file", self.ca_file,
                "--tls-auth-clients", "no",
            ]  # fmt: skip
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        wait_for_port("127.0.0.1", self.port, proc=self.proc)

    def command(self, *args: str) -> bytes:
        """One command through a blocking socket of the test's own (inline RESP), the raw reply."""
        parts = [f"*{len(args)}\r\n".encode()]
        for arg in args:
            data = arg.encode()
            parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as sock:
            if self.password:
                sock.sendall(
                    b"*2\r\n$4\r\nAUTH\r\n$%d\r\n%s\r\n" % (len(self.password), self.password.encode())
                )
                sock.recv(100)
            sock.sendall(b"".join(parts))
            return sock.recv(1 << 20)

    def pause(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def wait_stopped(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while self.proc is not None and self.proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
