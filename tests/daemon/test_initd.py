"""The LSB init script, run for real with a temporary /etc/default-style file and pid path."""

from __future__ import annotations

import importlib.metadata
import os
import pwd
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import websockets
from websockets.sync.client import connect

from tests.support.daemon_process import REPO, free_port
from tests.support.wsctl import clean_env
from wsdaemon.daemon.pidfile import process_exists

SCRIPT = REPO / "etc" / "init.d" / "wsdaemon"


def test_script_syntax_for_sh_and_bash():
    for shell in ("sh", "bash"):
        result = subprocess.run([shell, "-n", str(SCRIPT)], capture_output=True, text=True)
        assert result.returncode == 0, result.stderr


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck not installed")
def test_shellcheck_clean():
    result = subprocess.run(["shellcheck", str(SCRIPT)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_lsb_header():
    text = SCRIPT.read_text()
    header = text.split("### BEGIN INIT INFO\n", 1)[1].split("### END INIT INFO", 1)[0]
    keys = {line[2:].split(":", 1)[0] for line in header.splitlines() if ":" in line}
    assert {"Provides", "Required-Start", "Required-Stop", "Default-Start", "Default-Stop"} <= keys
    assert {"Short-Description", "Description"} <= keys
    assert os.access(SCRIPT, os.X_OK)


class InitScript:
    """The script with its own defaults file: DAEMON, CONFIG, PIDFILE, LOGFILE under ``base``."""

    def __init__(self, base: Path, python: str, pythonpath: str, user: str = "") -> None:
        self.base = base
        self.port = free_port()
        self.pidfile = base / "run" / "wsdaemon.pid"  # the script creates run/ and log/
        self.logfile = base / "log" / "wsdaemon.log"
        wrapper = base / "wsdaemon"  # what pip puts in a virtualenv's bin/
        wrapper.write_text(f'#!/bin/sh\nPYTHONPATH={pythonpath} exec {python} -m wsdaemon "$@"\n')
        wrapper.chmod(0o755)
        config = base / "wsdaemon.conf"
        config.write_text(f"[wsdaemon]\nhost = 127.0.0.1\nport = {self.port}\napp = wsdaemon.apps.echo:app\n")
        self.defaults = base / "default-wsdaemon"
        self.defaults.write_text(
            f"DAEMON={wrapper}\nCONFIG={config}\nPIDFILE={self.pidfile}\nLOGFILE={self.logfile}\n"
            f'DAEMON_USER={user}\nDAEMON_ARGS="--log-level debug --shutdown-grace 3"\nSTOP_TIMEOUT=20\n'
        )

    def __call__(self, action: str) -> subprocess.CompletedProcess:
        env = clean_env({"WSDAEMON_DEFAULTS": str(self.defaults)})
        return subprocess.run(
            ["sh", str(SCRIPT), action], capture_output=True, text=True, env=env, timeout=90
        )

    def pid(self) -> int:
        return int(self.pidfile.read_text().split()[0])

    def kill(self) -> None:
        if self.pidfile.exists():
            pid = self.pid()
            if process_exists(pid):
                os.kill(pid, 9)


def test_start_status_restart_reload_stop(tmp_path):
    init = InitScript(tmp_path, sys.executable, str(REPO))
    try:
        started = init("start")
        assert started.returncode == 0, started.stdout + started.stderr
        assert "Starting wsdaemon WebSocket server" in started.stdout
        pid = init.pid()
        assert process_exists(pid)

        status = init("status")
        assert status.returncode == 0
        assert f"wsdaemon is running: pid {pid}, port {init.port}" in status.stdout

        again = init("start")  # LSB: starting a running service succeeds
        assert again.returncode == 0 and "already running" in again.stdout
        assert init.pid() == pid

        with connect(f"ws://127.0.0.1:{init.port}/", proxy=None) as ws:
            ws.send("before")
            assert ws.recv(timeout=10) == "before"
            restarted = init("restart")
            assert restarted.returncode == 0, restarted.stdout + restarted.stderr
            with pytest.raises(websockets.ConnectionClosed) as info:
                ws.recv(timeout=15)
            assert info.value.rcvd.code == 1001
            assert info.value.rcvd.reason == "server shutting down"
        new_pid = init.pid()
        assert new_pid != pid and not process_exists(pid)
        with connect(f"ws://127.0.0.1:{init.port}/", proxy=None) as ws:
            ws.send("after")
            assert ws.recv(timeout=10) == "after"

        for action in ("reload", "force-reload"):
            result = init(action)
            assert result.returncode == 0, result.stdout + result.stderr
        assert init.logfile.read_text().count("SIGHUP: reloading") == 2
        assert init.pid() == new_pid

        stopped = init("stop")
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr
        assert not process_exists(new_pid)
        assert not init.pidfile.exists()
        assert init("status").returncode == 3
        assert init("stop").returncode == 0  # LSB: stopping a stopped service succeeds
        assert init("reload").returncode == 7  # LSB: not running
        assert init("bogus").returncode == 2
    finally:
        init.kill()


def test_missing_daemon_command(tmp_path):
    init = InitScript(tmp_path, sys.executable, str(REPO))
    (tmp_path / "wsdaemon").unlink()
    assert init("start").returncode == 5
    assert init("status").returncode == 4


def _system_python_for(user: str) -> str | None:
    """An interpreter ``user`` may run (this one may sit in root's home)."""
    for candidate in (shutil.which("python3", path="/usr/local/bin:/usr/bin:/bin"),):
        if candidate is None:
            continue
        probe = ["runuser", "-u", user, "--", candidate, "-c", "import sys; print(sys.version_info[:2])"]
        result = subprocess.run(probe, capture_output=True, text=True)
        if result.returncode == 0 and result.stdout.strip() == str(sys.version_info[:2]):
            return candidate
    return None


@pytest.mark.skipif(os.geteuid() != 0, reason="switching users needs root")
def test_daemon_user(tmp_path):
    user = "nobody"
    python = _system_python_for(user)
    if shutil.which("runuser") is None or python is None:
        pytest.skip(f"no Python {sys.version_info[:2]} that {user} can run")
    base = Path(tempfile.mkdtemp(prefix="wsdaemon-initd-"))  # tmp_path is private to root
    try:
        base.chmod(0o755)
        lib = base / "lib"  # the packages, where the unprivileged user can read them
        packages = {
            "click": Path(str(importlib.metadata.distribution("click").locate_file("click"))),
            # python-daemon installs the "daemon" package
            "daemon": Path(str(importlib.metadata.distribution("python-daemon").locate_file("daemon"))),
            "prometheus_client": Path(
                str(importlib.metadata.distribution("prometheus_client").locate_file("prometheus_client"))
            ),
            "wsdaemon": REPO / "wsdaemon",
        }
        for name, source in packages.items():
            shutil.copytree(source, lib / name, ignore=shutil.ignore_patterns("__pycache__", "*.so"))
        init = InitScript(base, python, str(lib), user=user)
        try:
            started = init("start")
            assert started.returncode == 0, started.stdout + started.stderr
            pid = init.pid()
            uid = pwd.getpwnam(user).pw_uid
            assert os.stat(f"/proc/{pid}").st_uid == uid  # the daemon runs as the user
            assert init.pidfile.parent.stat().st_uid == uid  # run/ and log/ were made for it
            assert init.logfile.stat().st_uid == uid
            assert stat.S_IMODE(init.pidfile.stat().st_mode) == 0o644
            assert init("status").returncode == 0
            assert init("stop").returncode == 0
            assert not process_exists(pid)
        finally:
            init.kill()
    finally:
        shutil.rmtree(base, ignore_errors=True)
