"""Supervision of the local worker processes: spawning, respawn with back-off, rolling restart.

Each of the ``--workers`` slots has one process. A process that exits is
replaced, at once the first time and then with exponential back-off, reset once
a worker has lived :data:`STABLE_AFTER` seconds. A worker whose task overran its
timeout is killed and replaced at once. :class:`RollingRestart` (SIGHUP)
replaces the workers one at a time: a new process first, then the old one is
told to finish what it holds and exit; nothing queued is lost.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import time
from collections.abc import Callable

from ..net.loop import TimerHandle
from .connection import WorkerConnection
from .host import WorkerPoolHost

log = logging.getLogger("wsdaemon.workers")

#: How often processes are polled for exit (and ``on_tick`` runs).
SUPERVISE_INTERVAL = 0.2
#: Restart back-off: first retry at once, then BACKOFF_BASE * 2**n up to BACKOFF_MAX.
BACKOFF_BASE = 0.5
BACKOFF_MAX = 30.0
#: A worker that lived this long resets its slot's back-off.
STABLE_AFTER = 10.0
#: Seconds a restart waits for a new worker to connect before giving up.
RESTART_CONNECT_TIMEOUT = 30.0
#: Seconds ``close()`` waits for workers to exit after SIGTERM before SIGKILL.
TERMINATE_WAIT = 2.0


class WorkerProcess:
    """A local worker process started by the supervisor."""

    __slots__ = ("slot", "popen", "pid", "started_at", "conn", "role", "kill_reason")

    def __init__(self, slot: int, popen: subprocess.Popen, role: str) -> None:
        self.slot = slot
        self.popen = popen
        self.pid = popen.pid
        self.started_at = time.monotonic()
        self.conn: WorkerConnection | None = None
        #: "current" (serves its slot), "candidate" (a restart's new worker), "retiring".
        self.role = role
        self.kill_reason = ""

    @property
    def stop_sent(self) -> bool:
        """Its worker was told to finish and exit: its exit is expected."""
        return self.conn is not None and self.conn.state == "draining"

    def kill(self, reason: str) -> None:
        if self.popen.poll() is None:
            self.kill_reason = self.kill_reason or reason
            try:
                self.popen.kill()
            except OSError:  # pragma: no cover - already gone
                pass

    def __repr__(self) -> str:
        return f"<worker process {self.pid} slot {self.slot} {self.role}>"


class Supervisor:
    """Keeps one worker process per slot running, and replaces them all on request.

    ``remote_workers()`` lists the connected remote workers a restart also
    replaces; ``on_tick(now)`` runs with every poll of the processes.
    """

    def __init__(
        self,
        host: WorkerPoolHost,
        socket_path: str,
        remote_workers: Callable[[], list[WorkerConnection]],
        on_tick: Callable[[float], None],
    ) -> None:
        self.host = host
        self.loop = host.loop
        self.socket_path = socket_path
        self.remote_workers = remote_workers
        self.on_tick = on_tick
        self.slots: list[WorkerProcess | None] = [None] * max(0, host.settings.workers)
        self.processes: dict[int, WorkerProcess] = {}
        self._by_conn: dict[WorkerConnection, WorkerProcess] = {}
        self._failures = [0] * len(self.slots)
        self._respawn_timers: dict[int, TimerHandle] = {}
        self._timer: TimerHandle | None = None
        self.closing = False
        #: The rolling restart under way, if any.
        self.restart: RollingRestart | None = None
        #: Workers that ended unplanned (crash, kill, task timeout) in their slot, which is refilled.
        self.crash_replacements = 0
        #: Rolling restarts started (SIGHUP), however many workers each replaced.
        self.rolling_restarts = 0

    # -- life cycle --------------------------------------------------------------

    def start(self) -> None:
        for slot in range(len(self.slots)):
            self.spawn(slot)
        self._timer = self.loop.call_every(SUPERVISE_INTERVAL, self._supervise)

    def shutdown(self) -> None:
        """Start no more processes; kill those that have not connected (the others are told to stop)."""
        if self.closing:
            return
        self.closing = True
        self.restart = None
        for handle in self._respawn_timers.values():
            handle.cancel()
        self._respawn_timers.clear()
        for proc in list(self.processes.values()):
            if proc.conn is None:
                proc.kill("shutdown")

    def close(self) -> None:
        """Stop every process: SIGTERM, then SIGKILL after :data:`TERMINATE_WAIT`."""
        self.shutdown()
        if self._timer is not None:
            self._timer.cancel()
        procs = [p for p in self.processes.values() if p.popen.poll() is None]
        for proc in procs:
            try:
                proc.popen.terminate()
            except OSError:  # pragma: no cover
                pass
        deadline = time.monotonic() + TERMINATE_WAIT
        for proc in procs:
            try:
                proc.popen.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.popen.kill()
                proc.popen.wait()
        self.processes.clear()

    # -- what the pool reports ---------------------------------------------------

    def process_of(self, conn: WorkerConnection) -> WorkerProcess | None:
        """The local process behind a connected worker (None for remote ones)."""
        return self._by_conn.get(conn)

    def worker_joined(self, conn: WorkerConnection) -> None:
        """Tie a local worker's connection to its process; a restart's new worker lets it go on."""
        proc = self.processes.get(conn.pid) if not conn.remote else None
        if proc is None:
            return
        proc.conn = conn
        self._by_conn[conn] = proc
        if proc.role == "candidate" and self.restart is not None:
            self.restart.candidate_ready(proc)

    def kill_worker(self, conn: WorkerConnection, reason: str) -> None:
        proc = self._by_conn.get(conn)
        if proc is not None:
            proc.kill(reason)

    def connection_lost(self, conn: WorkerConnection) -> None:
        """A local worker without its connection is of no use: it is killed and replaced."""
        proc = self._by_conn.pop(conn, None)
        if proc is not None and not proc.stop_sent and not self.closing:
            proc.kill("connection lost")
        if self.restart is not None:
            self.restart.connection_lost(conn)

    # -- processes ---------------------------------------------------------------

    def spawn(self, slot: int, role: str = "current") -> WorkerProcess | None:
        """Start a worker process for ``slot``; a candidate does not take the slot yet."""
        self._respawn_timers.pop(slot, None)
        settings = self.host.settings
        cmd = [
            sys.executable,
            "-m",
            "wsdaemon",
            "worker",
            "--socket",
            self.socket_path,
            "--app",
            settings.app,
            "--app-dir",
            settings.app_dir or ".",
            "--log-level",
            settings.log_level,
            "--max-frame",
            str(settings.task_max_size),
            "--supervised",
        ]
        try:
            popen = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, close_fds=True)
        except OSError as exc:
            log.error("cannot start a worker process: %s", exc)
            self._schedule_respawn(slot, crashed=True)
            return None
        proc = WorkerProcess(slot, popen, role)
        self.processes[proc.pid] = proc
        if role == "current":
            self.slots[slot] = proc
        log.info(
            "started worker process %d (slot %d%s)", proc.pid, slot, ", restart" if role != "current" else ""
        )
        return proc

    def promote(self, proc: WorkerProcess) -> WorkerProcess | None:
        """A candidate takes its slot; returns the process it replaces, now retiring."""
        old = self.slots[proc.slot]
        proc.role = "current"
        self.slots[proc.slot] = proc
        timer = self._respawn_timers.pop(proc.slot, None)
        if timer is not None:
            timer.cancel()
        if old is not None:
            old.role = "retiring"
        return old

    def _schedule_respawn(self, slot: int, crashed: bool) -> None:
        if self.closing or slot in self._respawn_timers:
            return
        if crashed:
            failures = self._failures[slot]
            self._failures[slot] += 1
            delay = 0.0 if failures == 0 else min(BACKOFF_MAX, BACKOFF_BASE * 2 ** (failures - 1))
        else:
            delay = 0.0
        if delay:
            log.warning("restarting worker slot %d in %.1f s", slot, delay)
        self._respawn_timers[slot] = self.loop.call_later(delay, self._respawn, slot)

    def _respawn(self, slot: int) -> None:
        self._respawn_timers.pop(slot, None)
        if not self.closing and self.slots[slot] is None:
            self.spawn(slot)

    def _supervise(self) -> None:
        now = time.monotonic()
        for proc in list(self.processes.values()):
            code = proc.popen.poll()
            if code is not None:
                self._process_exited(proc, code, now)
        self.on_tick(now)

    def _process_exited(self, proc: WorkerProcess, code: int, now: float) -> None:
        self.processes.pop(proc.pid, None)
        lived = now - proc.started_at
        how = f"killed by {_signal_name(-code)}" if code < 0 else f"exit code {code}"
        expected = self.closing or proc.stop_sent or proc.role == "retiring"
        log.log(
            logging.INFO if expected else logging.WARNING,
            "worker process %d ended after %.1f s (%s%s)",
            proc.pid,
            lived,
            how,
            f", {proc.kill_reason}" if proc.kill_reason else "",
        )
        if proc.conn is not None and not proc.conn.transport_closed:
            proc.conn.abort(None)
        if self.slots[proc.slot] is proc:
            self.slots[proc.slot] = None
            if not expected:
                self.crash_replacements += 1
            if lived >= STABLE_AFTER or proc.kill_reason == "timeout":
                self._failures[proc.slot] = 0
            self._schedule_respawn(proc.slot, crashed=proc.kill_reason != "timeout" and not expected)
        if self.restart is not None:
            self.restart.process_exited(proc)

    # -- rolling restart ---------------------------------------------------------

    def restart_workers(self) -> None:
        """Replace every worker, one at a time (see :class:`RollingRestart`)."""
        if self.closing:
            return
        if self.restart is not None:
            log.info("worker restart in progress; another one follows it")
            self.restart.request_again()
            return
        self.rolling_restarts += 1
        self.restart = RollingRestart(self, self.remote_workers())
        self.restart.next_step()

    def restart_ended(self, restart: RollingRestart) -> None:
        if self.restart is restart:
            self.restart = None


class RollingRestart:
    """One rolling restart: which old worker is being replaced now.

    Local: a new process is started; once it has joined, the old one finishes
    the tasks it holds and exits. Remote: each is told to finish and re-execute
    itself. If a new local worker fails to join, the restart stops there and
    the remaining old workers keep serving.
    """

    def __init__(self, supervisor: Supervisor, remotes: list[WorkerConnection]) -> None:
        self.supervisor = supervisor
        self.slots = list(range(len(supervisor.slots)))
        self.remotes = remotes
        self.candidate: WorkerProcess | None = None
        #: The old process or remote connection being retired.
        self.waiting_for: WorkerProcess | WorkerConnection | None = None
        self.timer: TimerHandle | None = None
        #: Another restart was asked for meanwhile: run it when this one ends.
        self.again = False
        log.info("restarting workers: %d local, %d remote", len(self.slots), len(self.remotes))

    def _active(self) -> bool:
        return self.supervisor.restart is self

    def request_again(self) -> None:
        self.again = True

    def next_step(self) -> None:
        supervisor = self.supervisor
        if not self._active():
            return
        self.waiting_for = None
        if self.slots:
            slot = self.slots.pop(0)
            self.candidate = supervisor.spawn(slot, role="candidate")
            if self.candidate is None:
                return self.abort("cannot start a new worker process")
            self.timer = supervisor.loop.call_later(
                RESTART_CONNECT_TIMEOUT, self._candidate_timeout, self.candidate
            )
            return
        while self.remotes:
            conn = self.remotes.pop(0)
            if conn.state == "ready" and not conn.transport_closed:
                self.waiting_for = conn
                conn.stop(restart=True)
                return
        log.info("workers restarted")
        supervisor.restart_ended(self)
        if self.again:
            supervisor.restart_workers()

    def candidate_ready(self, proc: WorkerProcess) -> None:
        if proc is not self.candidate or not self._active():
            return
        if self.timer is not None:
            self.timer.cancel()
        self.candidate = None
        old = self.supervisor.promote(proc)
        if old is None:
            return self.next_step()
        self.waiting_for = old
        if old.conn is not None and old.conn.state == "ready":
            old.conn.stop(restart=False)
        elif old.conn is None or old.conn.transport_closed:
            old.kill("replaced")

    def process_exited(self, proc: WorkerProcess) -> None:
        if not self._active():
            return
        if proc is self.candidate:
            self.abort(f"new worker {proc.pid} exited before joining")
        elif proc is self.waiting_for:
            self.next_step()

    def connection_lost(self, conn: WorkerConnection) -> None:
        if self._active() and conn is self.waiting_for:
            self.next_step()

    def _candidate_timeout(self, proc: WorkerProcess) -> None:
        if proc is self.candidate and self._active():
            proc.kill("did not join in time")
            self.abort(f"new worker {proc.pid} did not join within {RESTART_CONNECT_TIMEOUT:g} s")

    def abort(self, reason: str) -> None:
        log.error("worker restart stopped: %s; the remaining old workers keep running", reason)
        if self.timer is not None:
            self.timer.cancel()
        self.supervisor.restart_ended(self)


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"
