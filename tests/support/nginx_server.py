"""A private nginx (Debian's package) in front of the daemon, with etc/nginx/wsdaemon.conf as shipped.

The configuration is the project's own file with only its tokens replaced (ports
and paths), a certificate from ``trustme`` for TLS termination, and everything
nginx writes (pid, logs, temp files) under a temporary prefix. Never the system
service: ``nginx -p PREFIX -c FILE -g 'daemon off;'`` on a free port, stopped by
its pid.
"""

from __future__ import annotations

import shutil
import ssl
import subprocess
from pathlib import Path

import trustme

from tests.support.daemon_process import REPO, free_port, wait_for_port

TEMPLATE = REPO / "etc" / "nginx" / "wsdaemon.conf"


def nginx_binary() -> str:
    for candidate in ("nginx", "/usr/sbin/nginx"):
        path = shutil.which(candidate)
        if path:
            return path
    raise RuntimeError("nginx is not installed: bash tests/install-deps.sh installs Debian's nginx")


class Nginx:
    """nginx on 127.0.0.1:``port`` terminating TLS and proxying to ``upstream_port``."""

    def __init__(self, prefix: Path, upstream_port: int) -> None:
        self.prefix = prefix
        self.port = free_port()
        self.ca = trustme.CA()
        cert = self.ca.issue_cert("127.0.0.1", "localhost")
        cert_path, key_path = prefix / "cert.pem", prefix / "key.pem"
        cert.cert_chain_pems[0].write_to_path(cert_path)
        for extra in cert.cert_chain_pems[1:]:
            with open(cert_path, "ab") as f:
                f.write(extra.bytes())
        cert.private_key_pem.write_to_path(key_path)
        conf = TEMPLATE.read_text()
        for token, value in {
            "@PREFIX@": str(prefix),
            "@LISTEN_PORT@": str(self.port),
            "@DAEMON_PORT@": str(upstream_port),
            "@CERT@": str(cert_path),
            "@KEY@": str(key_path),
        }.items():
            conf = conf.replace(token, value)
        assert "@" not in conf, "a token was not replaced"
        self.conf_path = prefix / "nginx.conf"
        self.conf_path.write_text(conf)
        self.proc = subprocess.Popen(
            [nginx_binary(), "-p", str(prefix), "-c", str(self.conf_path), "-g", "daemon off;"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_for_port("127.0.0.1", self.port, proc=self.proc)
        except Exception:
            self.stop()
            raise RuntimeError(f"nginx did not start: {self.error_log()}") from None

    @property
    def https_url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def wss_url(self) -> str:
        return f"wss://127.0.0.1:{self.port}"

    def client_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context()
        self.ca.configure_trust(ctx)
        return ctx

    def error_log(self) -> str:
        path = self.prefix / "error.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else "(no error log)"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
