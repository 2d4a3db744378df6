"""The systemd unit: ``systemd-analyze verify`` where it exists, and the keys the daemon relies on."""

from __future__ import annotations

import configparser
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.daemon_process import REPO
from tests.support.wsctl import clean_env
from wsdaemon.settings import Settings

UNIT = REPO / "etc" / "systemd" / "wsdaemon.service"


def unit_keys(text: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=False, comment_prefixes=("#", ";"))
    parser.optionxform = str  # systemd keys are case-sensitive
    parser.read_string(text)
    return parser


def check_keys(text: str) -> None:
    unit = unit_keys(text)
    service = unit["Service"]
    assert service["Type"] in ("simple", "notify")
    program, command, *args = shlex.split(service["ExecStart"])
    assert program.endswith("/wsdaemon") and program.startswith("/")
    assert command == "run"  # in the foreground: systemd is the supervisor
    assert service["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert service["KillSignal"] == "SIGTERM"
    assert service["KillMode"] in ("mixed", "control-group")
    assert float(service["TimeoutStopSec"]) > Settings().shutdown_grace
    assert int(service["LimitNOFILE"]) >= 65536
    assert service["Restart"] == "on-failure"
    assert unit["Install"]["WantedBy"] == "multi-user.target"


def test_unit_keys():
    check_keys(UNIT.read_text())


def test_the_key_check_catches_a_broken_unit():
    broken = UNIT.read_text().replace("KillSignal=SIGTERM", "KillSignal=SIGKILL")
    with pytest.raises(AssertionError):
        check_keys(broken)


def test_exec_start_options_are_accepted_by_wsdaemon():
    _, command, *args = shlex.split(unit_keys(UNIT.read_text())["Service"]["ExecStart"])
    args = [str(REPO / "etc" / "wsdaemon.conf") if a == "/etc/wsdaemon.conf" else a for a in args]
    result = subprocess.run(
        [sys.executable, "-m", "wsdaemon", "show-config", *args],
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=60,
    )
    assert result.returncode == 0, result.stderr


def verify(text: str, tmp_path: Path) -> subprocess.CompletedProcess:
    """``systemd-analyze verify`` on ``text``, with ExecStart pointing to an executable that exists."""
    program = shlex.split(unit_keys(text)["Service"]["ExecStart"])[0]
    stand_in = tmp_path / "bin" / "wsdaemon"
    stand_in.parent.mkdir(exist_ok=True)
    stand_in.write_text("#!/bin/sh\nexit 0\n")
    stand_in.chmod(0o755)
    path = tmp_path / "wsdaemon.service"
    path.write_text(text.replace(program, str(stand_in)))
    return subprocess.run(
        ["systemd-analyze", "verify", str(path)], capture_output=True, text=True, timeout=60
    )


def complaints(result: subprocess.CompletedProcess) -> list[str]:
    # verify exits 0 even for keys it ignores as invalid: its messages are the verdict
    return [line for line in (result.stdout + result.stderr).splitlines() if "wsdaemon.service" in line]


needs_systemd = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed"
)


@needs_systemd
def test_systemd_analyze_verify(tmp_path):
    result = verify(UNIT.read_text(), tmp_path)
    assert result.returncode == 0, result.stderr
    assert complaints(result) == []


@needs_systemd
def test_systemd_analyze_verify_catches_a_broken_unit(tmp_path):
    result = verify(UNIT.read_text().replace("Type=notify", "Type=notyfy"), tmp_path)
    assert complaints(result)
