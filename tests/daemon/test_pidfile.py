"""The pid-lock file: only a live process holding the lock makes a daemon "running"."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from wsdaemon.daemon.pidfile import ABSENT, RUNNING, STALE, AlreadyRunning, PidFile, process_exists


def test_acquire_release(tmp_path):
    path = tmp_path / "w.pid"
    pidfile = PidFile(str(path))
    assert pidfile.check() == (ABSENT, None)
    with pidfile:
        assert path.read_text() == f"{os.getpid()}\n"
        assert path.stat().st_mode & 0o777 == 0o644 & ~_umask()
    assert not path.exists()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_a_file_nobody_locks_is_stale_even_if_its_pid_lives(tmp_path):
    path = tmp_path / "w.pid"
    path.write_text(f"{os.getpid()}\n")
    pidfile = PidFile(str(path))
    assert pidfile.check() == (STALE, os.getpid())
    pidfile.acquire(pid=12345)  # a stale file is replaced
    assert pidfile.replaced_pid == os.getpid()
    assert path.read_text() == "12345\n"
    pidfile.release()


@pytest.mark.parametrize("content", ["", "garbage\n", "-4\n", "0\n"])
def test_garbage_is_stale(tmp_path, content):
    path = tmp_path / "w.pid"
    path.write_text(content)
    assert PidFile(str(path)).check() == (STALE, None)
    assert PidFile(str(path)).remove_stale()
    assert not path.exists()


def test_held_by_another_process(tmp_path):
    path = tmp_path / "w.pid"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import sys
                from wsdaemon.daemon.pidfile import PidFile
                with PidFile({str(path)!r}):
                    print("locked", flush=True)
                    sys.stdin.read()
                """
            ),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    try:
        assert holder.stdout.readline() == "locked\n"
        pidfile = PidFile(str(path))
        assert pidfile.check() == (RUNNING, holder.pid)
        with pytest.raises(AlreadyRunning, match=f"already running \\(pid {holder.pid}"):
            pidfile.acquire()
        assert not pidfile.remove_stale()
        assert path.exists()
    finally:
        holder.kill()
        holder.wait()
    # the kernel dropped the lock with the process: stale, and replaceable
    assert PidFile(str(path)).check() == (STALE, holder.pid)
    with PidFile(str(path)):
        assert path.read_text() == f"{os.getpid()}\n"


def test_process_exists():
    assert process_exists(os.getpid())
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert not process_exists(child.pid)
    zombie = subprocess.Popen([sys.executable, "-c", "pass"])
    os.waitid(os.P_PID, zombie.pid, os.WEXITED | os.WNOWAIT)  # exited, not reaped yet
    assert not process_exists(zombie.pid)
    zombie.wait()
