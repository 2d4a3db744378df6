"""A pid-lock file: the daemon writes its pid and holds an ``flock`` on the file while it lives.

The lock is what makes a pid file trustworthy. A file whose lock nobody holds
is stale (its process died, perhaps by ``kill -9``) whatever pid it names, and
that pid may already belong to an unrelated process: it is never signalled.
The kernel drops the lock when the process dies, so no clean-up is needed for
the next start to succeed.
"""

from __future__ import annotations

import fcntl
import os
from typing import Any

RUNNING = "running"
STALE = "stale"
ABSENT = "absent"


class AlreadyRunning(Exception):
    def __init__(self, path: str, pid: int | None) -> None:
        if pid is not None and not process_exists(pid):
            message = f"pid file {path} is locked, but its pid {pid} is gone (a leftover child?)"
        else:
            message = f"already running (pid {pid or '?'}, pid file {path})"
        super().__init__(message)
        self.path = path
        self.pid = pid


def _read_pid(fd: int) -> int | None:
    text = os.pread(fd, 64, 0).split(b"\n", 1)[0].strip()
    return int(text) if text.isdigit() and int(text) > 0 else None


def process_exists(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie that nobody reaped is not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            state = fh.read().rsplit(b")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    except (OSError, IndexError):
        return True
    return state not in (b"Z", b"X")


class PidFile:
    """``with PidFile(path):`` holds the lock and the pid for the life of the process."""

    def __init__(self, path: str, note: str = "") -> None:
        self.path = path
        #: A second line after the pid (``port 8081``): what ``status`` must know of the running daemon.
        self.note = note
        self._fd: int | None = None
        #: The pid of a stale file that :meth:`acquire` replaced, for the log.
        self.replaced_pid: int | None = None

    def check(self) -> tuple[str, int | None]:
        """``(RUNNING, pid)``, ``(STALE, pid)`` or ``(ABSENT, None)``; never modifies the file."""
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return ABSENT, None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                locked = True
            else:
                locked = False
                fcntl.flock(fd, fcntl.LOCK_UN)
            pid = _read_pid(fd)
        finally:
            os.close(fd)
        if locked and (pid is None or process_exists(pid)):
            return RUNNING, pid
        return STALE, pid

    def read_note(self) -> str:
        """The second line of the file (empty when there is none or no file)."""
        try:
            with open(self.path, encoding="utf-8", errors="replace") as fh:
                lines = fh.read(4096).splitlines()
        except OSError:
            return ""
        return lines[1].strip() if len(lines) > 1 else ""

    def acquire(self, pid: int | None = None) -> None:
        """Lock the file and write ``pid`` (ours by default); AlreadyRunning if a live process holds it."""
        for _ in range(5):
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                held_by = _read_pid(fd)
                os.close(fd)
                raise AlreadyRunning(self.path, held_by) from None
            if self._names(fd):
                break
            os.close(fd)  # the previous owner unlinked it between our open and our lock
        else:  # pragma: no cover - needs a pathological race
            raise OSError(f"pid file {self.path} keeps changing under us")
        self.replaced_pid = _read_pid(fd)
        os.ftruncate(fd, 0)
        text = f"{pid or os.getpid()}\n" + (f"{self.note}\n" if self.note else "")
        os.pwrite(fd, text.encode(), 0)
        self._fd = fd

    def release(self) -> None:
        """Remove the file (if it is still ours) and drop the lock."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            if self._names(fd):
                os.unlink(self.path)
        finally:
            os.close(fd)

    def remove_stale(self) -> bool:
        """Delete the file if no live process holds its lock; True if it was removed."""
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return False
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
            if self._names(fd):
                os.unlink(self.path)
                return True
            return False
        finally:
            os.close(fd)

    def _names(self, fd: int) -> bool:
        """Whether ``self.path`` is still the file open as ``fd``."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return False
        own = os.fstat(fd)
        return (st.st_dev, st.st_ino) == (own.st_dev, own.st_ino)

    def __enter__(self) -> PidFile:
        self.acquire()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()
