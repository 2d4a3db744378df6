"""The default pid file belongs to the config file, not to a setting in it: editing ``port`` orphans nothing."""

from __future__ import annotations

import os
import signal

import pytest

from tests.support.daemon_process import free_port
from tests.support.wsctl import Service, wait_until
from wsdaemon.daemon.pidfile import process_exists
from wsdaemon.daemon.service import default_pidfile, fetch_status
from wsdaemon.settings import Settings


@pytest.fixture
def live(tmp_path):
    """``live.conf`` with a port, driven by ``wsdaemon ... --config live.conf`` and no --pidfile."""
    svc = Service(tmp_path, pidfile=False)
    config = tmp_path / "live.conf"

    def write(port: int) -> None:
        config.write_text(
            f"[wsdaemon]\nhost = 127.0.0.1\nport = {port}\napp = wsdaemon.apps.echo:app\n"
            f"logfile = {svc.logfile}\nshutdown_grace = 1\n"
        )

    write(svc.port)
    svc.options = ["--config", str(config)]
    svc.pidfile = type(svc.pidfile)(default_pidfile(0, str(config)))
    svc.write = write
    yield svc
    svc.kill_all()


def serving(port: int) -> int | None:
    try:
        return fetch_status(Settings(host="127.0.0.1", port=port), timeout=1)["pid"]
    except OSError:
        return None


def test_the_default_pid_file_is_named_after_the_config_file_path(tmp_path):
    a, b = default_pidfile(1, str(tmp_path / "live.conf")), default_pidfile(2, str(tmp_path / "live.conf"))
    assert a == b and os.path.basename(a).startswith("wsdaemon-live-")
    assert default_pidfile(1, str(tmp_path / "x" / "live.conf")) != a
    assert default_pidfile(8081).endswith("wsdaemon-8081.pid")  # no config file: per port, as before


def test_changing_the_port_in_the_config_file_then_reload_restart_start(live):
    first = live.start()
    assert serving(live.port) == first
    new_port = free_port()
    live.write(new_port)

    reload = live.cli("reload")
    assert reload.returncode == 0, reload.stderr  # was: "not running" (exit 7)
    assert f"SIGHUP to pid {first}" in reload.stdout
    live.wait_log("restart")  # the port needs a restart: the daemon says so and keeps serving
    assert serving(live.port) == first

    status = live.cli("status")  # asks the port the daemon serves, not the file's new one
    assert status.returncode == 0 and f"pid {first}, port {live.port}," in status.stdout
    assert f"the settings say port {new_port} now: restart to apply" in status.stdout

    again = live.cli("start")
    assert again.returncode == 1 and f"already running (pid {first}" in again.stderr
    assert serving(new_port) is None

    restart = live.cli("restart")
    assert restart.returncode == 0, restart.stderr
    second = live.pid()
    assert second != first and not process_exists(first)  # one daemon, not two
    wait_until(lambda: serving(new_port) == second, what="the new port served")
    assert serving(live.port) is None

    status = live.cli("status")
    assert status.returncode == 0 and f"pid {second}, port {new_port}," in status.stdout
    assert live.cli("stop").returncode == 0
    assert not process_exists(second) and not live.pidfile.exists()


def test_a_second_start_of_the_same_config_is_refused_even_from_another_directory(live, tmp_path):
    pid = live.start()
    other = tmp_path / "elsewhere"
    other.mkdir()
    live.tmp = other  # cli() runs in live.tmp: the config path is the same absolute file
    live.options = ["--config", os.path.relpath(live.options[1], other)]
    result = live.cli("start")
    assert result.returncode == 1 and f"already running (pid {pid}" in result.stderr
    os.kill(pid, signal.SIGTERM)
    wait_until(lambda: not process_exists(pid), what="the daemon gone")
