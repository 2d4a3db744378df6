"""``--processes N``: a supervising parent that forks N serving children on one listening socket.

gunicorn-style: signals are queued by a tiny handler and dispatched from the
main loop as ``handle_<signal>``; a dead child is replaced (with a back-off
when it dies right after starting); SIGHUP, SIGTERM/SIGINT and SIGUSR1 are
passed on to every child. The children inherit the socket bound before the
fork, so the kernel spreads accepts over them (see docs/scaling.md, Processes).
"""

from __future__ import annotations

import ctypes
import logging
import os
import select
import signal
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger("wsdaemon.arbiter")

#: A child that exits sooner than this after its start counts as a crash at start-up.
QUICK_DEATH = 1.0
BACKOFF_MIN, BACKOFF_MAX = 0.1, 10.0
_SIGNALS = (signal.SIGHUP, signal.SIGTERM, signal.SIGINT, signal.SIGUSR1, signal.SIGCHLD)
_PR_SET_PDEATHSIG = 1


class Arbiter:
    """Starts ``count`` children running ``child_main(index)`` and keeps them running."""

    def __init__(
        self,
        count: int,
        child_main: Callable[[int], int],
        stop_timeout: float,
        reopen_logs: Callable[[], None] | None = None,
        slots: Any = None,
    ) -> None:
        self.count = count
        self.child_main = child_main
        self.stop_timeout = stop_timeout
        self.reopen_logs = reopen_logs
        #: The shared slot records (net/handoff.py): a slot's pid is set at spawn, cleared at death.
        self.slots = slots
        #: Sockets served by the parent itself (``--metrics-listen``): object with on_readable/sock.
        self.watched: list[Any] = []
        self.children: dict[int, tuple[int, float]] = {}  # pid -> (index, started at)
        self.backoff = [0.0] * count
        self.due: dict[int, float] = {}  # index -> monotonic time to (re)start it
        self.queue: list[int] = []  # bounded by the handful of signal kinds, see _on_signal
        self.stopping_since = 0.0
        self._wake_r, self._wake_w = os.pipe()

    # -- signals --------------------------------------------------------------------

    def _on_signal(self, signum: int, frame: object) -> None:
        if len(self.queue) < 16:
            self.queue.append(signum)
        try:
            os.write(self._wake_w, b"!")
        except OSError:
            pass

    def handle_sighup(self) -> None:
        log.info("SIGHUP: children reload")
        self._signal_children(signal.SIGHUP)

    def handle_sigterm(self) -> None:
        if not self.stopping_since:
            log.info("stopping %d children", len(self.children))
            self.stopping_since = time.monotonic()
            self.due.clear()
        self._signal_children(signal.SIGTERM)

    handle_sigint = handle_sigterm

    def handle_sigusr1(self) -> None:
        if self.reopen_logs is not None:
            self.reopen_logs()
        self._signal_children(signal.SIGUSR1)

    def handle_sigchld(self) -> None:
        self._reap()

    def _signal_children(self, signum: int) -> None:
        for pid in list(self.children):
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass

    # -- children -------------------------------------------------------------------

    def spawn(self, index: int) -> int:
        pid = os.fork()
        if pid:
            self.children[pid] = (index, time.monotonic())
            if self.slots is not None:
                self.slots.started(index, pid)
            log.info("child %d started (pid %d)", index, pid)
            return pid
        status = 1
        try:
            for signum in _SIGNALS:
                signal.signal(signum, signal.SIG_DFL)
            # Until the child's loop has its own handlers: a reload or reopen sent meanwhile must
            # not kill it (SIGHUP's and SIGUSR1's default action is to terminate).
            signal.signal(signal.SIGHUP, signal.SIG_IGN)
            signal.signal(signal.SIGUSR1, signal.SIG_IGN)
            for watched in self.watched:
                watched.sock.close()
            signal.set_wakeup_fd(-1)
            os.close(self._wake_r)
            os.close(self._wake_w)
            _die_with_parent()
            status = self.child_main(index)
        except BaseException:
            log.exception("child %d failed", index)
        finally:
            logging.shutdown()
            os._exit(status)

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if not pid:
                return
            if pid not in self.children:
                continue
            index, started = self.children.pop(pid)
            if self.slots is not None:
                self.slots.stopped(index)
            if self.stopping_since:
                log.info("child %d (pid %d) exited", index, pid)
                continue
            lived = time.monotonic() - started
            if lived < QUICK_DEATH:
                self.backoff[index] = min(BACKOFF_MAX, max(BACKOFF_MIN, self.backoff[index] * 2))
            else:
                self.backoff[index] = 0.0
            log.warning(
                "child %d (pid %d) died (%s) after %.1f s; restarting in %.1f s",
                index,
                pid,
                _describe(status),
                lived,
                self.backoff[index],
            )
            self.due[index] = time.monotonic() + self.backoff[index]

    def run(self, ready: Callable[[], None] | None = None) -> None:
        """Supervise until SIGTERM/SIGINT and every child has exited."""
        for signum in _SIGNALS:
            signal.signal(signum, self._on_signal)
        os.set_blocking(self._wake_w, False)
        for index in range(self.count):
            self.spawn(index)
        if ready is not None:
            ready()
        while not (self.stopping_since and not self.children):
            try:
                ready, _, _ = select.select([self._wake_r, *(w.sock for w in self.watched)], [], [], 0.5)
            except InterruptedError:
                ready = []
            if self._wake_r in ready:
                os.read(self._wake_r, 4096)
            for watched in self.watched:
                if watched.sock in ready and not self.stopping_since:
                    watched.on_readable()
            while self.queue:
                name = signal.Signals(self.queue.pop(0)).name.lower()
                getattr(self, f"handle_{name}")()
            self._reap()
            now = time.monotonic()
            for index, when in list(self.due.items()):
                if when <= now:
                    del self.due[index]
                    self.spawn(index)
            if self.stopping_since and now - self.stopping_since > self.stop_timeout:
                log.warning(
                    "%d children still run after %.0f s: SIGKILL", len(self.children), self.stop_timeout
                )
                self._signal_children(signal.SIGKILL)
                self.stopping_since = now  # one more period to reap them
        log.info("all children stopped")


def _describe(status: int) -> str:
    if os.WIFSIGNALED(status):
        return signal.Signals(os.WTERMSIG(status)).name
    return f"exit {os.waitstatus_to_exitcode(status)}"


def _die_with_parent() -> None:
    """Linux: a child gets SIGTERM when the parent dies (kill -9 of the parent leaves no orphans)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass
