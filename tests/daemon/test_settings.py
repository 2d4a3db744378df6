"""Settings from the command line, WSDAEMON_* variables and the config file, in that order."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from tests.support.daemon_process import REPO
from tests.support.wsctl import Service, clean_env
from wsdaemon.daemon.settings_loader import (
    SettingsError,
    SettingsSource,
    env_var,
    read_config_file,
    sample_config,
)
from wsdaemon.settings import Settings, setting_fields

SAMPLE = REPO / "etc" / "wsdaemon.conf"


def write(tmp_path, text: str):
    path = tmp_path / "wsdaemon.conf"
    path.write_text(text)
    return path


def wsdaemon(*args: str, env: dict | None = None, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "wsdaemon", *args],
        capture_output=True,
        text=True,
        env=clean_env(env),
        cwd=cwd or str(REPO),
        timeout=60,
    )


# -- the file ---------------------------------------------------------------------


def test_values_are_converted_like_the_command_line(tmp_path):
    path = write(
        tmp_path,
        "# comment\n[wsdaemon]\nport = 9001  # inline comment\nstatic = no\nping-interval = 2.5\n"
        "log_level = DEBUG\nlogfile = logs/w.log\n",
    )
    values = read_config_file(str(path))
    assert values == {
        "port": 9001,
        "static": False,
        "ping_interval": 2.5,
        "log_level": "debug",
        "logfile": str(tmp_path / "logs" / "w.log"),  # relative to the file
    }


@pytest.mark.parametrize(
    "text, message",
    [
        ("[wsdaemon]\nprot = 1\n", "unknown key 'prot' in [wsdaemon]; did you mean 'port'?"),
        ("[wsdaemon]\nzzz = 1\n", "unknown key 'zzz' in [wsdaemon]"),
        ("[wsdaemon]\nport = lots\n", "port = 'lots': 'lots' is not a valid integer"),
        ("[wsdaemon]\nport = 70000\n", "70000 is not in the range 0<=x<=65535"),
        ("[wsdaemon]\nclose_timeout = -1\n", "-1s is not in the range x>=0"),
        ("[wsdaemon]\nclose_timeout = soon\n", "'soon' is not a valid duration (seconds, or with ms, s, m"),
        (
            "[wsdaemon]\nmax_write_buffer = lots\n",
            "'lots' is not a valid size (bytes, or with k, M, G (k=1024)",
        ),
        ("[wsdaemon]\nstatic = maybe\n", "'maybe' is not a valid boolean"),
        ("[wsdaemon]\nlog_level = loud\n", "'loud' is not one of 'debug', 'info', 'warning', 'error'"),
        ("[wsdaemon]\nport = 1\nport = 2\n", "option 'port' in section 'wsdaemon' already exists"),
        ("[wsdaemon]\nmax-headers = 1\nmax_headers = 2\n", "'max_headers' is set twice"),
        ("[server]\nport = 1\n", "unknown section [server]; every key goes in [wsdaemon]"),
        ("[DEFAULT]\nport = 1\n", "unknown section [DEFAULT]"),
        ("port = 1\n", "File contains no section headers"),
    ],
)
def test_bad_files_are_clear_errors(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(SettingsError) as info:
        read_config_file(str(path))
    assert message in str(info.value)
    assert str(path) in str(info.value)


def test_missing_file_is_an_error(tmp_path):
    with pytest.raises(SettingsError, match="cannot read config file .*: No such file or directory"):
        SettingsSource(str(tmp_path / "nope.conf")).load()


def test_empty_file_and_empty_section_give_the_defaults(tmp_path):
    assert SettingsSource(str(write(tmp_path, ""))).load() == Settings()
    assert SettingsSource(str(write(tmp_path, "[wsdaemon]\n"))).load() == Settings()


def test_overrides_beat_the_file_and_reload_reads_the_file_again(tmp_path):
    path = write(tmp_path, "[wsdaemon]\nport = 9001\nmax_headers = 7\n")
    source = SettingsSource(str(path), {"port": 9999})
    settings = source.load()
    assert (settings.port, settings.max_headers) == (9999, 7)
    path.write_text("[wsdaemon]\nport = 9002\nmax_headers = 8\n")
    settings = source.load()
    assert (settings.port, settings.max_headers) == (9999, 8)


def test_the_sample_file_documents_every_key_with_its_default(tmp_path):
    text = SAMPLE.read_text()
    assert text == sample_config(), "regenerate: wsdaemon show-config --sample > etc/wsdaemon.conf"
    for f in setting_fields():
        assert f"\n#{f.name} =" in text
    # uncommented, every key is accepted and gives exactly the defaults
    uncommented = re.sub(r"^#(\w+ =.*)$", r"\1", text, flags=re.M)
    path = write(tmp_path, uncommented)
    assert set(read_config_file(str(path))) == {f.name for f in setting_fields()}
    assert SettingsSource(str(path)).load() == Settings()


# -- the command line, end to end ---------------------------------------------------


def shown(output: str) -> dict[str, tuple[str, str]]:
    rows = {}
    for line in output.splitlines()[1:]:
        setting, _, origin = line.partition(" # ")
        name, _, value = setting.partition(" = ")
        rows[name.strip()] = (value.strip(), origin.strip())
    return rows


def test_precedence_command_line_then_environment_then_file_then_defaults(tmp_path):
    path = write(tmp_path, "[wsdaemon]\nport = 9001\nmax_headers = 7\nclose_timeout = 3\nbacklog = 11\n")
    env = {"WSDAEMON_PORT": "9002", "WSDAEMON_MAX_HEADERS": "8", "WSDAEMON_STATIC": "no"}
    result = wsdaemon("show-config", "--config", str(path), "--port", "9003", env=env)
    assert result.returncode == 0, result.stderr
    rows = shown(result.stdout)
    assert rows["port"] == ("9003", "command line")
    assert rows["max_headers"] == ("8", "environment WSDAEMON_MAX_HEADERS")
    assert rows["static"] == ("no", "environment WSDAEMON_STATIC")
    assert rows["close_timeout"] == ("3s", f"config file {path}")
    assert rows["backlog"] == ("11", f"config file {path}")
    assert rows["ping_interval"] == ("20s", "default")
    assert set(rows) == {f.name for f in setting_fields()}
    # the output is itself a valid config file
    again = write(tmp_path, result.stdout)
    assert read_config_file(str(again))["port"] == 9003


def test_every_setting_has_a_variable(tmp_path):
    # 1, or the option's minimum when that is higher (--compression-window-bits is 8..15)
    env = {
        env_var(f): str(max(1, f.metadata["minimum"] or 0))
        for f in setting_fields()
        if f.type in ("int", "float")
    }
    rows = shown(wsdaemon("show-config", env=env).stdout)
    for f in setting_fields():
        if f.type in ("int", "float"):
            assert rows[f.name][1] == f"environment {env_var(f)}"


def test_config_file_named_by_the_environment(tmp_path):
    path = write(tmp_path, "[wsdaemon]\nport = 9011\n")
    rows = shown(wsdaemon("show-config", env={"WSDAEMON_CONFIG": str(path)}).stdout)
    assert rows["port"] == ("9011", f"config file {path}")


def test_a_daemon_listens_where_its_config_file_says(tmp_path):
    svc = Service(tmp_path)
    path = write(tmp_path, f"[wsdaemon]\nhost = 127.0.0.1\nport = {svc.port}\napp = wsdaemon.apps.echo:app\n")
    svc.options = ["--config", str(path), "--pidfile", str(svc.pidfile), "--logfile", str(svc.logfile)]
    try:
        assert svc.cli("start").returncode == 0
        status = svc.cli("status")
        assert status.returncode == 0 and f"port {svc.port}," in status.stdout
        assert svc.cli("stop").returncode == 0
    finally:
        svc.kill_all()


@pytest.mark.parametrize("command", ["start", "run"])
def test_bad_settings_stop_the_daemon_at_start(tmp_path, command):
    path = write(tmp_path, "[wsdaemon]\nmax_mesage_size = 10\n")
    result = wsdaemon(command, "--config", str(path), "--port", "0", "--pidfile", str(tmp_path / "p"))
    assert result.returncode == 1
    assert "unknown key 'max_mesage_size' in [wsdaemon]; did you mean 'max_message_size'?" in result.stderr
    assert not os.path.exists(tmp_path / "p")

    result = wsdaemon(command, "--port", "0", env={"WSDAEMON_PING_TIMEOUT": "soon"})
    assert result.returncode == 2
    assert "'soon' is not a valid duration" in result.stderr and "WSDAEMON_PING_TIMEOUT" in result.stderr

    result = wsdaemon(command, "--port", "-5")
    assert result.returncode == 2
    assert "-5 is not in the range 0<=x<=65535" in result.stderr
