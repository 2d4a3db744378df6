"""Descriptor exhaustion: with ``ulimit -n 256``, 1,000 connection attempts neither crash nor spin the daemon.

At EMFILE the listener stops polling the listening socket for a moment (the
pending connections wait in the kernel's backlog), logs once per episode, and
accepts again once descriptors are free. CPU time comes from /proc/PID/stat.
"""

from __future__ import annotations

import os
import resource
import socket
import time

import websocket

from tests.support.rawclient import handshake_request, raise_fd_limit

ATTEMPTS = 1000
NOFILE = 256


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process (fields 14 and 15 of /proc/PID/stat)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def test_descriptor_exhaustion_pauses_accepting_without_spinning_and_recovers(daemon_factory):
    raise_fd_limit(4096)
    d = daemon_factory(
        "--handshake-timeout", "60", "--backlog", "2048", "--ping-interval", "0", app="wsdaemon.apps.echo:app"
    )
    pid = d.proc.pid
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (NOFILE, NOFILE))  # as `ulimit -n 256` would
    clients = []
    try:
        for _ in range(ATTEMPTS):
            s = socket.create_connection((d.host, d.port), timeout=10)
            s.sendall(handshake_request())
            clients.append(s)
        # the daemon takes what it can, then runs out of descriptors
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and "pausing accepts" not in d.log():
            time.sleep(0.1)
        assert "pausing accepts" in d.log()
        assert open_fds(pid) >= NOFILE - 5
        # exhausted: measure CPU over 3 seconds; a busy loop would use about 3 s
        cpu0, t0 = cpu_seconds(pid), time.monotonic()
        time.sleep(3)
        cpu, wall = cpu_seconds(pid) - cpu0, time.monotonic() - t0
        print(f"exhausted: {open_fds(pid)} descriptors open, CPU {cpu:.2f}s in {wall:.2f}s")
        assert cpu < 0.3 * wall, f"the daemon used {cpu:.2f}s of CPU in {wall:.2f}s"
        assert d.alive()
    finally:
        for s in clients:
            s.close()
    # normal service resumes once they are gone
    deadline = time.monotonic() + 30
    while True:
        try:
            ws = websocket.create_connection(d.url, timeout=5)
            ws.send("back")
            assert ws.recv() == "back"
            ws.close()
            break
        except (OSError, websocket.WebSocketException):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    assert d.alive()
    log = d.log()
    assert log.count("pausing accepts") == 1, "logged once per episode"
    assert "accepting again after descriptor exhaustion" in log
    assert "Traceback" not in log


def soft_nofile(pid: int) -> int:
    with open(f"/proc/{pid}/limits") as f:
        line = next(line for line in f if line.startswith("Max open files"))
    return int(line.split()[3])


def test_the_daemon_raises_its_descriptor_limit_or_warns(daemon_factory):
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    fits = daemon_factory("--max-connections", "5000", app="wsdaemon.apps.echo:app")
    assert soft_nofile(fits.proc.pid) >= min(5064, hard)
    too_many = daemon_factory("--max-connections", str(hard + 1), app="wsdaemon.apps.echo:app")
    deadline = time.monotonic() + 10
    while "listening on" not in too_many.log():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert f"descriptor limit {hard} is below" in too_many.log()
    assert "descriptor limit" not in fits.log()
