"""The README's application runs as the README says: ``mygame.py`` in this directory, ``wsdaemon run --app mygame:app``.

The ``wsdaemon`` used here is what pip installs (a script importing
``wsdaemon.daemon.cli``), so the current directory is not on the import path by
accident as with ``python -m``: ``--app-dir`` (default: here) is what finds mygame.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from websockets.sync.client import connect

from tests.daemon.test_initd import SCRIPT
from tests.support.daemon_process import REPO, free_port, wait_for_port
from tests.support.wsctl import clean_env, wait_until
from wsdaemon.daemon.pidfile import process_exists

README = (REPO / "README.md").read_text()


def readme_app() -> str:
    """The README's ``# mygame.py`` code block."""
    found = re.search(r"```python\n(# mygame\.py\n.*?)```", README, re.S)
    assert found, "README.md has no '# mygame.py' code block"
    return found.group(1)


def readme_command() -> list[str]:
    """The ``wsdaemon run`` line that follows the block."""
    found = re.search(r"# mygame\.py\n.*?```sh\n(wsdaemon run [^\n]*)\n", README, re.S)
    assert found, "README.md does not say how to run mygame.py"
    return shlex.split(found.group(1))


@pytest.fixture
def game(tmp_path):
    """A directory holding mygame.py (and nothing else), and a pip-style ``wsdaemon`` elsewhere."""
    here = tmp_path / "game"
    here.mkdir()
    (here / "mygame.py").write_text(readme_app())
    bindir = tmp_path / "bin"
    bindir.mkdir()
    script = bindir / "wsdaemon"
    script.write_text(
        f"#!{sys.executable}\nimport sys\nfrom wsdaemon.daemon.cli import main\nsys.exit(main())\n"
    )
    script.chmod(0o755)
    return here, script


def command(script: Path, port: int, *extra: str) -> list[str]:
    args = readme_command()
    assert args[:2] == ["wsdaemon", "run"] and "--app" in args and "mygame:app" in args
    args[args.index("--port") + 1] = str(port)  # another developer may hold 8081
    return [str(script), *args[1:], *extra]


def env() -> dict:
    return clean_env({"WSDAEMON_HOST": "127.0.0.1"})  # loopback only; the command line stays the README's


def expect_welcome(port: int) -> None:
    with connect(f"ws://127.0.0.1:{port}/", proxy=None, open_timeout=10) as ws:
        assert ws.recv(timeout=10) == "welcome from 127.0.0.1 over rfc6455"


def workers_connected(port: int) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=5) as resp:
        return len(json.load(resp)["workers"]["workers"])


def run_foreground(script: Path, cwd: Path, port: int, *extra: str) -> subprocess.Popen:
    log = open(cwd.parent / f"run-{port}.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(command(script, port, *extra), cwd=cwd, env=env(), stdout=log, stderr=log)
    try:
        wait_for_port("127.0.0.1", port, timeout=20, proc=proc)
    except RuntimeError:
        raise AssertionError((cwd.parent / f"run-{port}.log").read_text()) from None
    return proc


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        assert proc.wait(20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()


def test_the_readme_app_runs_in_the_foreground(game):
    here, script = game
    port = free_port()
    proc = run_foreground(script, here, port)
    try:
        expect_welcome(port)
    finally:
        stop(proc)


def test_the_readme_app_runs_with_workers(game):
    here, script = game
    port = free_port()
    proc = run_foreground(script, here, port, "--workers", "2")
    try:
        wait_until(lambda: workers_connected(port) == 2, 30, "two workers importing mygame")
        expect_welcome(port)
    finally:
        stop(proc)


def test_the_readme_app_runs_started_as_a_daemon_with_workers(game, tmp_path):
    here, script = game
    port = free_port()
    args = command(script, port, "--workers", "2", "--pidfile", str(tmp_path / "w.pid"))
    args[1] = "start"
    args += ["--logfile", str(tmp_path / "w.log")]
    started = subprocess.run(args, cwd=here, env=env(), capture_output=True, text=True, timeout=60)
    assert started.returncode == 0, started.stderr
    pid = int((tmp_path / "w.pid").read_text().split()[0])
    try:
        wait_until(lambda: workers_connected(port) == 2, 30, "two workers importing mygame")
        expect_welcome(port)
        args[1] = "stop"
        assert subprocess.run(args, cwd=here, env=env(), timeout=60).returncode == 0
    finally:
        if process_exists(pid):
            subprocess.run(["kill", "-9", str(pid)])


def test_an_explicit_app_dir_works_from_anywhere(game, tmp_path):
    here, script = game
    port = free_port()
    proc = run_foreground(script, tmp_path, port, "--app-dir", "game")  # relative to where it runs
    try:
        expect_welcome(port)
    finally:
        stop(proc)
    result = subprocess.run(
        [str(script), "run", "--app", "mygame:app", "--port", "0"],
        cwd=tmp_path,
        env=env(),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1
    assert f"No module named 'mygame' (imported from --app-dir {tmp_path}" in result.stderr


def test_the_readme_app_runs_under_the_init_script(game, tmp_path):
    here, script = game
    port = free_port()
    config = tmp_path / "wsdaemon.conf"
    config.write_text(f"[wsdaemon]\nhost = 127.0.0.1\nport = {port}\napp = mygame:app\nworkers = 2\n")
    pidfile = tmp_path / "run" / "wsdaemon.pid"
    defaults = tmp_path / "default-wsdaemon"
    defaults.write_text(
        f"DAEMON={script}\nCONFIG={config}\nPIDFILE={pidfile}\nLOGFILE={tmp_path / 'log' / 'w.log'}\n"
        f"APP_DIR={here}\nSTOP_TIMEOUT=20\n"
    )
    init_env = clean_env({"WSDAEMON_DEFAULTS": str(defaults)})

    def init(action: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["sh", str(SCRIPT), action], cwd="/", env=init_env, capture_output=True, text=True, timeout=90
        )

    started = init("start")
    assert started.returncode == 0, (started.stdout, started.stderr)
    try:
        wait_until(lambda: workers_connected(port) == 2, 30, "two workers importing mygame")
        expect_welcome(port)
        assert init("stop").returncode == 0
    finally:
        if pidfile.exists() and process_exists(pid := int(pidfile.read_text().split()[0])):
            subprocess.run(["kill", "-9", str(pid)])
