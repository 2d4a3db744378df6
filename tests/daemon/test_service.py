"""Daemon operations end to end: the real ``wsdaemon`` commands as processes, real clients."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import websockets
from websockets.sync.client import connect

from tests.support.wsctl import Service, clean_env, wait_until
from wsdaemon.daemon.pidfile import process_exists
from wsdaemon.daemon.service import default_pidfile


def client(url: str):
    return connect(url, proxy=None, open_timeout=10, close_timeout=10, max_size=None)


@pytest.fixture
def connected():
    """``connected(url)``: an open client, closed at the end of the test."""
    with contextlib.ExitStack() as stack:
        yield lambda url: stack.enter_context(client(url))


def echo(ws, text: str = "ping") -> None:
    ws.send(text)
    assert ws.recv(timeout=10) == text


def expect_close(ws, code: int, reason: str | None = None) -> None:
    with pytest.raises(websockets.ConnectionClosed) as info:
        ws.recv(timeout=15)
    assert info.value.rcvd is not None, "no close frame received"
    assert info.value.rcvd.code == code
    if reason is not None:
        assert info.value.rcvd.reason == reason


def test_start_status_restart_with_clients_then_stop(service_factory, connected):
    svc = service_factory()
    started = svc.cli("start")
    assert started.returncode == 0, started.stderr
    assert "wsdaemon started: pid" in started.stdout
    pid = svc.pid()
    assert process_exists(pid)

    clients = [connected(svc.url) for _ in range(3)]
    for i, ws in enumerate(clients):
        echo(ws, f"hello {i}")
    status = svc.cli("status")
    assert status.returncode == 0, status.stdout + status.stderr
    assert f"pid {pid}" in status.stdout
    assert f"port {svc.port}" in status.stdout
    assert "uptime 0:00:" in status.stdout
    assert "3 connections (rfc6455 3)" in status.stdout

    restarted = svc.cli("restart")
    assert restarted.returncode == 0, restarted.stderr + svc.log()
    assert f"wsdaemon stopped (pid {pid})" in restarted.stdout
    new_pid = svc.pid()
    assert new_pid != pid
    assert not process_exists(pid)
    for ws in clients:
        expect_close(ws, 1001, "server shutting down")
    svc.wait_log(f"[{pid}] INFO wsdaemon.service: stopped")
    assert (
        f"[{pid}] INFO wsdaemon.server: shutting down: closing 3 connections" in svc.log()
    )  # per-connection lines are DEBUG

    # the clients come back to the new process
    clients = [connected(svc.url) for _ in range(3)]
    for ws in clients:
        echo(ws, "again")
    status = svc.cli("status")
    assert status.returncode == 0
    assert f"pid {new_pid}" in status.stdout and "3 connections" in status.stdout

    stopped = svc.cli("stop")
    assert stopped.returncode == 0, stopped.stderr
    assert f"wsdaemon stopped (pid {new_pid})" in stopped.stdout
    for ws in clients:
        expect_close(ws, 1001, "server shutting down")
    assert not svc.pidfile.exists()
    assert not process_exists(new_pid)
    status = svc.cli("status")
    assert status.returncode == 3
    assert "not running" in status.stdout
    # stopping a stopped daemon succeeds (LSB); reload does not (7: not running)
    assert svc.cli("stop").returncode == 0
    assert svc.cli("reload").returncode == 7


def test_second_start_is_refused(service_factory):
    svc = service_factory()
    pid = svc.start()
    again = svc.cli("start")
    assert again.returncode == 1
    assert f"already running (pid {pid}" in again.stderr
    assert svc.pid() == pid
    with client(svc.url) as ws:
        echo(ws)
    assert svc.cli("stop").returncode == 0


def test_stale_pid_file_after_kill_9(service_factory):
    svc = service_factory()
    pid = svc.start()
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: not process_exists(pid), what=f"pid {pid} to die")
    assert svc.pidfile.exists()

    status = svc.cli("status")
    assert status.returncode == 1
    assert f"dead: pid file {svc.pidfile} remains, pid {pid} is not running" in status.stdout

    started = svc.cli("start")
    assert started.returncode == 0, started.stderr
    assert f"replacing stale pid file {svc.pidfile} (pid {pid} is not running)" in started.stdout
    new_pid = svc.pid()
    assert new_pid != pid
    assert svc.cli("status").returncode == 0
    with client(svc.url) as ws:
        echo(ws)
    assert svc.cli("stop").returncode == 0


def test_a_pid_file_naming_a_live_process_without_the_lock_is_stale(service_factory):
    svc = service_factory()
    svc.pidfile.write_text(f"{os.getpid()}\n")  # alive, but not a wsdaemon holding the lock
    status = svc.cli("status")
    assert status.returncode == 1
    stopped = svc.cli("stop")  # must not signal that pid (it is this test process)
    assert stopped.returncode == 0 and "removed stale pid file" in stopped.stdout
    assert not svc.pidfile.exists()


def test_start_with_the_port_in_use_fails_clearly(service_factory):
    svc = service_factory()
    with socket.socket() as busy:
        busy.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        busy.bind((svc.host, svc.port))
        busy.listen()
        result = svc.cli("start")
    assert result.returncode == 1
    assert f"Error: cannot listen on 127.0.0.1:{svc.port}: Address already in use" in result.stderr
    assert not svc.pidfile.exists()


def test_start_failures_are_reported_on_the_terminal(service_factory, tmp_path):
    bad_app = service_factory(app="no_such_module_xyz:app")
    result = bad_app.cli("start")
    assert result.returncode == 1
    assert "cannot load application 'no_such_module_xyz:app'" in result.stderr

    svc = service_factory(logfile=False)
    result = svc.cli("start", "--logfile", str(tmp_path / "missing-dir" / "x.log"))
    assert result.returncode == 1
    assert "cannot open log file" in result.stderr and "No such file or directory" in result.stderr

    result = svc.cli("start", "--pidfile", str(tmp_path / "missing-dir" / "x.pid"))
    assert result.returncode == 1
    assert "cannot write pid file" in result.stderr
    assert not svc.pidfile.exists()


def test_an_error_inside_the_daemon_after_the_fork_reaches_the_terminal(service_factory):
    # e2e_app-free: an application whose on_start fails only runs inside the daemon
    svc = service_factory(app="wsdaemon_failing_app:app")
    env = {"PYTHONPATH": f"{svc.tmp}{os.pathsep}{clean_env()['PYTHONPATH']}"}
    (svc.tmp / "wsdaemon_failing_app.py").write_text(
        "from wsdaemon import Application\n"
        "app = Application()\n"
        "@app.on_start\n"
        "def boom(server):\n"
        "    raise RuntimeError('no database')\n"
    )
    result = svc.cli("start", env=env)
    assert result.returncode == 1
    assert "RuntimeError: no database" in result.stderr
    assert "Traceback" in svc.log()
    assert not svc.pidfile.exists()


def test_sigusr1_reopens_the_log_file(service_factory):
    svc = service_factory("--log-level", "debug")  # the per-connection lines are at DEBUG
    pid = svc.start()
    rotated = svc.logfile.with_name(svc.logfile.name + ".1")
    os.rename(svc.logfile, rotated)
    os.kill(pid, signal.SIGUSR1)
    wait_until(svc.logfile.exists, what="a new log file")
    svc.wait_log("(re)opened")
    with client(svc.url + "after-rotation") as ws:
        echo(ws)
    svc.wait_log("open rfc6455 127.0.0.1")
    assert "/after-rotation" in svc.log()
    assert "/after-rotation" not in rotated.read_text()
    assert "daemon started" in rotated.read_text()

    # the same through the command logrotate's postrotate runs
    os.rename(svc.logfile, rotated)
    result = svc.cli("reopen-logs")
    assert result.returncode == 0, result.stderr
    assert f"SIGUSR1 to pid {pid}" in result.stdout
    wait_until(svc.logfile.exists, what="a new log file")
    svc.wait_log("(re)opened")
    assert svc.cli("stop").returncode == 0
    assert "stopped" in svc.log()


def test_sighup_reloads_the_config_file_without_dropping_clients(service_factory, connected, tmp_path):
    config = tmp_path / "wsdaemon.conf"
    config.write_text("[wsdaemon]\nmax_message_size = 1000\nlog_level = info\n")
    svc = service_factory("--config", str(config))
    svc.start()
    kept = connected(svc.url)
    echo(kept, "x" * 1000)
    with client(svc.url) as big:
        big.send("x" * 2000)
        expect_close(big, 1009)

    config.write_text("[wsdaemon]\nmax_message_size = 100000\nlog_level = debug\nbacklog = 5\n")
    result = svc.cli("reload")
    assert result.returncode == 0, result.stderr
    svc.wait_log("configuration reloaded; changed: log_level, max_message_size")
    assert "['backlog'] only change at a restart" in svc.log()
    echo(kept, "still here")  # the connection from before the reload is untouched
    with client(svc.url) as big:  # the new limit applies to new connections
        echo(big, "y" * 2000)
    assert "DEBUG wsdaemon.server: reload: max_message_size 1000 -> 100000" in svc.log()  # new level
    status = svc.cli("status")
    assert f"port {svc.port}" in status.stdout and "1 connection (rfc6455 1)" in status.stdout

    # a broken file: `wsdaemon reload` refuses it; a bare SIGHUP logs it and keeps the configuration
    config.write_text("[wsdaemon]\nmax_mesage_size = 5\n")
    refused = svc.cli("reload")
    assert refused.returncode == 1
    assert "unknown key 'max_mesage_size' in [wsdaemon]; did you mean 'max_message_size'?" in refused.stderr
    os.kill(svc.pid(), signal.SIGHUP)
    svc.wait_log("reload failed, keeping the running configuration")
    assert "did you mean 'max_message_size'?" in svc.log()
    echo(kept, "z" * 1000)
    with client(svc.url) as big:
        echo(big, "z" * 2000)
    stopped = svc.cli("stop")  # the pid file is on the command line: the broken file is only a warning
    assert stopped.returncode == 0, stopped.stderr
    assert "Warning: config file" in stopped.stderr


def test_run_with_pidfile_exits_0_on_sigterm_and_removes_the_pid_file(tmp_path, connected):
    svc = Service(tmp_path, logfile=False)
    cmd = [sys.executable, "-m", "wsdaemon", "run", *svc.options]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, env=clean_env(), cwd=str(tmp_path))
    try:
        wait_until(lambda: svc.cli("status").returncode == 0, what="run to serve")
        assert svc.pid() == proc.pid
        second = svc.cli("run")
        assert second.returncode == 1 and f"already running (pid {proc.pid}" in second.stderr
        ws = connected(svc.url)
        echo(ws)
        proc.send_signal(signal.SIGTERM)
        expect_close(ws, 1001, "server shutting down")
        assert proc.wait(20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    log = proc.stderr.read()
    assert "shutting down: closing 1 connection\n" in log
    assert not svc.pidfile.exists()


def test_run_notifies_systemd_ready_and_reloading(tmp_path):
    notify_path = str(tmp_path / "notify.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(notify_path)
    listener.settimeout(20)
    svc = Service(tmp_path, logfile=False, pidfile=False)
    cmd = [sys.executable, "-m", "wsdaemon", "run", *svc.options]
    env = clean_env({"NOTIFY_SOCKET": notify_path})
    proc = subprocess.Popen(cmd, stderr=subprocess.DEVNULL, env=env, cwd=str(tmp_path))
    try:
        assert listener.recv(256) == f"READY=1\nMAINPID={proc.pid}".encode()
        with client(svc.url) as ws:  # ready means serving
            echo(ws)
        proc.send_signal(signal.SIGHUP)
        assert listener.recv(256) == b"RELOADING=1"
        assert listener.recv(256) == b"READY=1"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
    finally:
        listener.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_default_pid_file_is_shared_by_start_stop_and_status(service_factory):
    svc = service_factory(pidfile=False)
    path = default_pidfile(svc.port)
    assert not os.path.exists(path)
    started = svc.cli("start")
    assert started.returncode == 0, started.stderr
    assert f"pid file {path}" in started.stdout
    try:
        status = svc.cli("status")
        assert status.returncode == 0 and f"port {svc.port}" in status.stdout
        assert svc.cli("stop").returncode == 0
        assert not os.path.exists(path)
    finally:
        if os.path.exists(path):
            pid = int(open(path).read().split()[0])
            if process_exists(pid):
                os.kill(pid, signal.SIGKILL)


def test_started_daemon_runs_workers_reloads_them_and_stops_them(service_factory, tmp_path):
    # the application sits in the directory `start` runs from, as `python -m` allows:
    # the daemon (working in /) and its worker processes must still import it
    shutil.copy(Path(__file__).parents[1] / "support" / "taskapp.py", tmp_path / "taskapp_cwd.py")
    svc = service_factory("--workers", "1", app="taskapp_cwd:app")
    svc.start()

    def task(ws, name, *args):
        ws.send(json.dumps({"id": 1, "task": name, "args": list(args)}))
        return json.loads(ws.recv(timeout=30))["result"]

    with client(svc.url) as ws:
        assert task(ws, "add", 2, 3) == 5
        first_worker = task(ws, "whoami")["pid"]
        assert svc.cli("reload").returncode == 0
        svc.wait_log("workers restarted")
        second_worker = task(ws, "whoami")["pid"]
        assert second_worker != first_worker
        assert not process_exists(first_worker)
        assert svc.cli("stop").returncode == 0
    assert not process_exists(second_worker)
