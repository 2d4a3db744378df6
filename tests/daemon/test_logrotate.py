"""etc/logrotate.d/wsdaemon with the real logrotate, templated to temporary paths: new lines go to the new file."""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import subprocess

import pytest
from websockets.sync.client import connect

from tests.support.daemon_process import REPO
from tests.support.wsctl import Service, wait_until

CONFIG = REPO / "etc" / "logrotate.d" / "wsdaemon"

pytestmark = pytest.mark.skipif(shutil.which("logrotate") is None, reason="logrotate not installed")


def templated(tmp_path, svc: Service) -> str:
    text = CONFIG.read_text()
    for installed, here in (
        ("/var/log/wsdaemon/*.log", f"{svc.logfile.parent}/*.log"),
        ("/run/wsdaemon/wsdaemon.pid", str(svc.pidfile)),
        (
            "create 0640 wsdaemon adm",
            f"create 0640 {pwd.getpwuid(os.getuid()).pw_name} {grp.getgrgid(os.getgid()).gr_name}",
        ),
    ):
        assert installed in text, f"{CONFIG} no longer has {installed!r}"
        text = text.replace(installed, here)
    path = tmp_path / "logrotate.conf"
    path.write_text(text)
    path.chmod(0o644)
    return str(path)


def test_after_rotation_the_daemon_writes_to_the_new_file(tmp_path):
    logs = tmp_path / "log"
    logs.mkdir(mode=0o755)
    svc = Service(tmp_path, "--log-level", "debug")
    svc.logfile = logs / "wsdaemon.log"
    svc.options[svc.options.index("--logfile") + 1] = str(svc.logfile)
    try:
        svc.start()
        svc.wait_log("daemon started")
        conf = templated(tmp_path, svc)
        result = subprocess.run(
            ["logrotate", "-f", "-s", str(tmp_path / "state"), conf],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        rotated = logs / "wsdaemon.log.1"
        assert rotated.exists() and "daemon started" in rotated.read_text()
        svc.wait_log("(re)opened")  # the new wsdaemon.log: SIGUSR1 reached the daemon
        before = rotated.read_text()
        with connect(svc.url, proxy=None, open_timeout=10) as ws:
            ws.send("after rotation")
            assert ws.recv(timeout=10) == "after rotation"
        wait_until(lambda: svc.log().count("\n") >= 2, what="lines in the new log")
        assert rotated.read_text() == before  # nothing more into the rotated file
        assert svc.cli("stop").returncode == 0
        assert "stopped" in svc.log()
    finally:
        svc.kill_all()


def test_a_stale_pid_file_is_not_signalled(tmp_path):
    logs = tmp_path / "log"
    logs.mkdir(mode=0o755)
    (logs / "wsdaemon.log").write_text("old line\n")
    svc = Service(tmp_path)
    sleeper = subprocess.Popen(["sleep", "30"])  # a live process that does not hold the lock
    try:
        svc.pidfile.write_text(f"{sleeper.pid}\n")
        svc.logfile = logs / "wsdaemon.log"
        conf = templated(tmp_path, svc)
        result = subprocess.run(
            ["logrotate", "-f", "-s", str(tmp_path / "state"), conf],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        assert sleeper.poll() is None  # SIGUSR1 would have killed sleep
    finally:
        sleeper.kill()
        sleeper.wait()
