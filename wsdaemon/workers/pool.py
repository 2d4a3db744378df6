"""The daemon's side of the workers: listeners, connections, dispatch and supervision.

Worker processes connect to a Unix socket (and, when configured, a TCP listener
for workers on other machines). Every worker connection is a
:class:`WorkerConnection` registered in the server's one selector, next to the
browsers: the loop never waits for a worker.

Dispatch: a submitted task goes to the ready worker with the fewest tasks in
flight, below ``--worker-max-inflight``; otherwise it waits in a queue of at most
``--task-queue-size`` tasks. A worker runs its tasks one after the other in the
order received, so of the tasks in flight on a worker only the first (the *head*)
is running: its timeout starts when it becomes the head, and when a worker is lost
only the head can have been started. The others go back to the front of the queue.

Supervision: each of the ``--workers`` slots has one process. A process that exits
is replaced, at once the first time and then with exponential back-off, reset once
a worker has lived :data:`STABLE_AFTER` seconds. A worker whose task overran its
timeout is killed and replaced at once. :meth:`WorkerPool.restart_workers` (SIGHUP)
replaces the workers one at a time: a new process first, then the old one is told
to finish what it holds and exit; nothing queued is lost.
"""

from __future__ import annotations

import hmac
import itertools
import logging
import os
import shutil
import signal
import socket
import stat
import struct
import subprocess
import sys
import tempfile
import time
from collections import deque
from typing import TYPE_CHECKING, Any

from ..net.listener import Listener
from ..net.loop import EVENT_READ
from ..net.sockets import bind_socket, format_address
from ..net.stream import StreamConnection
from ..proto import workerproto
from ..tasks import TaskCancelled, TaskError, TaskFuture, TaskQueueFull, TaskTimeout, WorkerDied

if TYPE_CHECKING:
    from ..server import Server

log = logging.getLogger("wsdaemon.workers")

#: Seconds a new worker connection has to send its ``hello``.
HELLO_TIMEOUT = 10.0
#: How often processes are polled for exit and the queue for expired tasks.
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
#: Connections that have not yet sent ``hello``; more are closed at once.
MAX_PENDING_HELLOS = 64
#: Shortest accepted token for remote workers, in bytes.
MIN_TOKEN_LENGTH = 16

_PEERCRED = struct.Struct("3i")


class PendingTask:
    """One submitted task, from submission to its answer."""

    __slots__ = (
        "id",
        "name",
        "frame",
        "future",
        "timeout",
        "idempotent",
        "runs",
        "queued_at",
        "started_at",
        "timer",
        "worker",
    )

    def __init__(
        self, id: int, name: str, frame: bytes, future: TaskFuture, timeout: float, idempotent: bool
    ) -> None:
        self.id = id
        self.name = name
        self.frame = frame
        self.future = future
        self.timeout = timeout
        self.idempotent = idempotent
        #: Times the task became the running head of a worker.
        self.runs = 0
        self.queued_at = time.monotonic()
        self.started_at = 0.0
        self.timer: Any = None
        self.worker: WorkerConnection | None = None

    def __repr__(self) -> str:
        return f"<task {self.name}#{self.id}>"


class WorkerProcess:
    """A local worker process started by the pool."""

    __slots__ = ("slot", "popen", "pid", "started_at", "conn", "role", "kill_reason", "stop_sent")

    def __init__(self, slot: int, popen: subprocess.Popen, role: str) -> None:
        self.slot = slot
        self.popen = popen
        self.pid = popen.pid
        self.started_at = time.monotonic()
        self.conn: WorkerConnection | None = None
        #: "current" (serves its slot), "candidate" (a restart's new worker), "retiring".
        self.role = role
        self.kill_reason = ""
        self.stop_sent = False

    def kill(self, reason: str) -> None:
        if self.popen.poll() is None:
            self.kill_reason = self.kill_reason or reason
            try:
                self.popen.kill()
            except OSError:  # pragma: no cover - already gone
                pass

    def __repr__(self) -> str:
        return f"<worker process {self.pid} slot {self.slot} {self.role}>"


class WorkerConnection(StreamConnection):
    """One worker's socket: ``hello`` first, then tasks out and answers in."""

    __slots__ = (
        "pool",
        "decoder",
        "state",
        "remote",
        "pid",
        "worker_host",
        "inflight",
        "process",
        "connected_at",
    )

    def __init__(self, pool: WorkerPool, sock: socket.socket, address: Any, remote: bool) -> None:
        super().__init__(pool.server, sock, address)
        self.pool = pool
        self.decoder = workerproto.FrameDecoder(workerproto.HELLO_MAX_FRAME)
        #: "hello" until authenticated, then "ready"; "draining" once told to stop.
        self.state = "hello"
        self.remote = remote
        self.pid = 0
        self.worker_host = ""
        #: Tasks sent and not answered, in the order sent; the first one is running.
        self.inflight: dict[int, PendingTask] = {}
        self.process: WorkerProcess | None = None
        self.connected_at = time.monotonic()
        self.deadline = self.loop.now + HELLO_TIMEOUT
        self.host.watch(self)
        pool._unauthenticated.add(self)

    def data_received(self, data: bytes) -> None:
        try:
            messages = self.decoder.feed(data)
        except workerproto.FrameError as exc:
            log.warning("%s: protocol error: %s; dropping the worker", self, exc)
            self.abort(None)
            return
        for message in messages:
            if self.transport_closed or self._draining:
                return
            if self.state == "hello":
                self.pool.worker_hello(self, message)
            else:
                self.pool.worker_message(self, message)

    def send_message(self, message: dict[str, Any]) -> None:
        self.write(workerproto.encode(message))

    def on_deadline(self, now: float) -> None:
        if self.state == "hello":
            log.warning("%s: no hello within %.0f s; dropping it", self, HELLO_TIMEOUT)
            self.abort(None)
        else:
            super().on_deadline(now)

    def connection_lost(self, exc: BaseException | None) -> None:
        self.pool.worker_lost(self)

    @property
    def capacity(self) -> int:
        if self.state != "ready":
            return 0
        return self.pool.max_inflight - len(self.inflight)

    def __repr__(self) -> str:
        where = format_address(self.remote_address) if self.remote else "unix"
        return f"<worker {self.pid or '?'} {where}>"


class WorkerPool:
    """Task dispatch to worker connections, and supervision of the local worker processes."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.loop = server.loop
        settings = server.settings
        self.app = server.app
        self.queue: deque[PendingTask] = deque()
        #: Authenticated worker connections, local and remote.
        self.workers: list[WorkerConnection] = []
        self.slots: list[WorkerProcess | None] = [None] * max(0, settings.workers)
        self.processes: dict[int, WorkerProcess] = {}
        self._failures = [0] * len(self.slots)
        self._respawn_timers: dict[int, Any] = {}
        self._ids = itertools.count(1)
        self._timer: Any = None
        self.listeners: list[Listener] = []
        self.socket_path = ""
        self._tmpdir = ""
        self.token: bytes | None = None
        self.closing = False
        self._unauthenticated: set[WorkerConnection] = set()
        self._restart: _Restart | None = None
        self.counters = dict.fromkeys(
            ("submitted", "completed", "failed", "timed_out", "retried", "worker_exits", "restarts"), 0
        )
        if settings.worker_listen:
            self.token = read_token(settings.worker_token_file)
        try:
            self._open_listeners()
        except BaseException:
            self._close_listeners()
            raise

    @property
    def settings(self) -> Any:
        """The server's settings of the moment: a reload (SIGHUP) may replace them."""
        return self.server.settings

    @property
    def max_inflight(self) -> int:
        return max(1, self.settings.worker_max_inflight)

    # -- listeners ---------------------------------------------------------------

    def _open_listeners(self) -> None:
        settings = self.settings
        if settings.worker_socket:
            path = settings.worker_socket
        else:
            self._tmpdir = tempfile.mkdtemp(prefix="wsdaemon-workers-")
            path = os.path.join(self._tmpdir, "workers.sock")
        try:
            sock = bind_unix_socket(path)
        except OSError as exc:
            raise OSError(f"cannot listen for workers on {path}: {exc.strerror or exc}") from exc
        self.socket_path = path
        self._add_listener(sock, remote=False)
        if settings.worker_listen:
            host, port = parse_host_port(settings.worker_listen)
            try:
                tcp = bind_socket(host, port, 64)
            except OSError as exc:
                raise OSError(
                    f"cannot listen for workers on {settings.worker_listen}: {exc.strerror}"
                ) from exc
            self._add_listener(tcp, remote=True)
            log.info("remote workers: listening on %s", format_address(tcp.getsockname()))

    def _add_listener(self, sock: socket.socket, remote: bool) -> None:
        sock.setblocking(False)

        def make(client: socket.socket, address: Any) -> WorkerConnection:
            if remote:
                _enable_keepalive(client)
            return WorkerConnection(self, client, address, remote)

        listener = Listener(self.loop, sock, make, admit=self.admit)
        self.loop.register(sock, EVENT_READ, listener)
        self.listeners.append(listener)

    @property
    def remote_address(self) -> Any:
        """The TCP address remote workers connect to, if any."""
        for listener in self.listeners:
            if listener.sock.family != socket.AF_UNIX and listener.sock.fileno() >= 0:
                return listener.sock.getsockname()
        return None

    def admit(self, client: socket.socket, address: Any) -> bool:
        """Listener hook: accept unless closing or too many connections have not said ``hello``."""
        if self.closing:
            client.close()
            return False
        if len(self._unauthenticated) >= MAX_PENDING_HELLOS:
            log.warning(
                "refused worker connection from %s: %d connections have not said hello yet",
                format_address(address),
                len(self._unauthenticated),
            )
            client.close()
            return False
        return True

    # -- life cycle (called by the server) ---------------------------------------

    def start(self) -> None:
        for slot in range(len(self.slots)):
            self._spawn(slot)
        self._timer = self.loop.call_every(SUPERVISE_INTERVAL, self._supervise)
        log.info(
            "worker pool: %d local workers on %s, %d tasks declared",
            len(self.slots),
            self.socket_path,
            len(self.app.tasks),
        )

    def shutdown(self) -> None:
        """Take no more tasks, fail the queued ones, tell every worker to finish and exit."""
        if self.closing:
            return
        self.closing = True
        self._restart = None
        for handle in self._respawn_timers.values():
            handle.cancel()
        self._respawn_timers.clear()
        for listener in self.listeners:
            listener.close()
        self._fail_queue(lambda t: TaskCancelled(f"task {t.name!r} not run: the server is shutting down"))
        for conn in list(self.workers):
            self._stop_worker(conn, restart=False)
        for proc in list(self.processes.values()):
            if proc.conn is None:
                proc.kill("shutdown")

    def close(self) -> None:
        """Fail what is left, stop every process (SIGTERM, then SIGKILL) and remove the socket."""
        self.shutdown()
        if self._timer is not None:
            self._timer.cancel()
        for conn in list(self.workers):
            conn.abort(None)
        self._fail_queue(lambda t: TaskCancelled(f"task {t.name!r} not run: the server shut down"))
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
        self._close_listeners()

    def _close_listeners(self) -> None:
        for listener in self.listeners:
            listener.close()
        if self.socket_path:
            try:
                os.unlink(self.socket_path)
            except OSError:
                pass
        if self._tmpdir:
            shutil.rmtree(self._tmpdir, ignore_errors=True)

    def reload(self) -> None:
        """SIGHUP: read the token file again, restart the workers so they load the code again."""
        if self.token is not None:
            try:
                token = read_token(self.settings.worker_token_file)
            except (OSError, ValueError) as exc:
                log.error("reload: keeping the worker token: %s", exc)
            else:
                if token != self.token:
                    log.info("reload: new worker token; connected workers keep their connection")
                self.token = token
        self.restart_workers()

    # -- the application's API ---------------------------------------------------

    def submit(
        self,
        name: str,
        args: tuple | list = (),
        kwargs: dict | None = None,
        callback: Any = None,
        timeout: float | None = None,
    ) -> TaskFuture:
        """Queue task ``name``; raises at once for what cannot be run (see :mod:`wsdaemon.tasks`)."""
        if self.closing:
            raise TaskCancelled("the server is shutting down")
        task_fn = self.app.tasks.get(name)
        if task_fn is None:
            raise ValueError(f"unknown task {name!r}")
        if len(self.queue) >= self.settings.task_queue_size and self._free_worker() is None:
            raise TaskQueueFull(
                f"{len(self.queue)} tasks are waiting for a worker (--task-queue-size "
                f"{self.settings.task_queue_size})"
            )
        task_id = next(self._ids)
        message = {"type": "task", "id": task_id, "name": name, "args": list(args), "kwargs": kwargs or {}}
        try:
            frame = workerproto.encode(message, self.settings.task_max_size)
        except workerproto.FrameTooLarge as exc:
            raise ValueError(f"arguments of task {name!r} are too large: {exc}") from None
        except (TypeError, ValueError) as exc:
            raise TypeError(f"arguments of task {name!r} are not JSON-serialisable: {exc}") from None
        if timeout is None:
            timeout = task_fn.timeout if task_fn.timeout is not None else self.settings.task_timeout
        future = TaskFuture(name)
        task = PendingTask(task_id, name, frame, future, timeout, task_fn.idempotent)
        future._on_cancel = lambda f: self._cancelled(task)
        if callback is not None:
            future.add_done_callback(callback)
        self.counters["submitted"] += 1
        self.queue.append(task)
        self._dispatch()
        return future

    # -- dispatch ----------------------------------------------------------------

    def _free_worker(self) -> WorkerConnection | None:
        best = None
        best_capacity = 0
        for conn in self.workers:
            capacity = conn.capacity
            if capacity > best_capacity:
                best, best_capacity = conn, capacity
        return best

    def _dispatch(self) -> None:
        queue = self.queue
        while queue:
            conn = self._free_worker()
            if conn is None:
                return
            task = queue.popleft()
            if task.future.done():
                continue
            task.worker = conn
            task.started_at = 0.0
            conn.inflight[task.id] = task
            conn.write(task.frame)  # may find the worker gone: worker_lost requeues the task
            if len(conn.inflight) == 1:
                self._start_head(conn)

    def _start_head(self, conn: WorkerConnection) -> None:
        """The first task in flight is the one the worker runs now: start its clock."""
        for task in conn.inflight.values():
            task.runs += 1
            task.started_at = time.monotonic()
            if task.timeout and task.timeout > 0:
                task.timer = self.loop.call_later(task.timeout, self._timed_out, conn, task)
            return

    def _cancelled(self, task: PendingTask) -> None:
        if task.worker is None:
            try:
                self.queue.remove(task)
            except ValueError:
                pass

    def worker_message(self, conn: WorkerConnection, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind not in ("result", "error"):
            log.warning("%s: unknown message type %r ignored", conn, kind)
            return
        task_id = message.get("id")
        inflight = conn.inflight
        was_head = bool(inflight) and next(iter(inflight)) == task_id
        task = inflight.pop(task_id, None) if isinstance(task_id, int) else None
        if task is None:
            log.warning("%s: answer for unknown task id %r ignored", conn, task_id)
            return
        if task.timer is not None:
            task.timer.cancel()
            task.timer = None
        task.worker = None
        if was_head and inflight:
            self._start_head(conn)
        self._dispatch()
        if kind == "result":
            self.counters["completed"] += 1
            task.future.set_result(message.get("value"))
        else:
            self.counters["failed"] += 1
            task.future.set_exception(
                TaskError(
                    str(message.get("error_type") or "Exception"),
                    str(message.get("message") or ""),
                    str(message.get("traceback") or ""),
                )
            )
        if conn.state == "draining" and not inflight:
            log.debug("%s: drained", conn)

    def _timed_out(self, conn: WorkerConnection, task: PendingTask) -> None:
        if conn.inflight.get(task.id) is not task:
            return
        del conn.inflight[task.id]
        task.timer = None
        task.worker = None
        self.counters["timed_out"] += 1
        log.warning(
            "task %s#%d ran over its %.3g s timeout on %s; replacing the worker",
            task.name,
            task.id,
            task.timeout,
            conn,
        )
        task.future.set_exception(TaskTimeout(f"task {task.name!r} did not finish within {task.timeout:g} s"))
        if conn.process is not None:
            conn.process.kill("timeout")
        conn.abort(None)

    def _fail_queue(self, make_error: Any) -> None:
        queue, self.queue = self.queue, deque()
        for task in queue:
            task.future.set_exception(make_error(task))

    def _expire_queue(self, now: float) -> None:
        limit = self.settings.task_queue_timeout
        if limit <= 0 or not self.queue or now - min(t.queued_at for t in self.queue) < limit:
            return
        keep: deque[PendingTask] = deque()
        for task in self.queue:
            if now - task.queued_at >= limit:
                self.counters["timed_out"] += 1
                task.future.set_exception(
                    TaskTimeout(f"task {task.name!r} waited {limit:g} s for a free worker")
                )
            else:
                keep.append(task)
        self.queue = keep

    # -- worker connections ------------------------------------------------------

    def worker_hello(self, conn: WorkerConnection, message: dict[str, Any]) -> None:
        """Authenticate a new worker connection; only then may tasks be sent to it."""
        self._unauthenticated.discard(conn)
        if message.get("type") != "hello":
            return self._refuse(conn, "expected hello")
        if message.get("version") != workerproto.PROTOCOL_VERSION:
            return self._refuse(conn, f"protocol version {message.get('version')!r} not supported")
        pid = message.get("pid") if isinstance(message.get("pid"), int) else 0
        if conn.remote:
            given = message.get("token")
            given = given.encode("utf-8") if isinstance(given, str) else b""
            if self.token is None or not hmac.compare_digest(given, self.token):
                return self._refuse(conn, "bad token")
        else:
            cred_pid, uid = _peer_credentials(conn.sock)
            if uid is not None and uid not in (os.getuid(), 0):
                return self._refuse(conn, f"uid {uid} is not allowed")
            pid = cred_pid or pid
        if self.closing:
            return self._refuse(conn, "shutting down")
        conn.state = "ready"
        conn.pid = pid
        conn.worker_host = str(message.get("host") or "")
        conn.decoder.max_size = self.settings.task_max_size
        self.server.unwatch(conn)
        missing = sorted(set(self.app.tasks) - set(message.get("tasks") or ()))
        proc = self.processes.get(pid) if not conn.remote else None
        if proc is not None:
            proc.conn = conn
            conn.process = proc
        self.workers.append(conn)
        conn.send_message({"type": "welcome", "max_inflight": self.max_inflight})
        log.info(
            "worker %s joined (%s%s)%s",
            pid,
            "remote " + format_address(conn.remote_address) if conn.remote else "local",
            f", host {conn.worker_host}" if conn.worker_host else "",
            f"; it lacks tasks {', '.join(missing)}" if missing else "",
        )
        if proc is not None and proc.role == "candidate" and self._restart is not None:
            self._restart.candidate_ready(proc)
        self._dispatch()

    def _refuse(self, conn: WorkerConnection, reason: str) -> None:
        log.warning("refused worker connection from %s: %s", format_address(conn.remote_address), reason)
        conn.state = "refused"
        conn.send_message({"type": "refused", "reason": reason})
        conn.close_after_flush()

    def _stop_worker(self, conn: WorkerConnection, restart: bool) -> None:
        """Ask a worker to finish the tasks it holds and exit (or, remote, re-execute itself)."""
        if conn.state != "ready" or conn.transport_closed:
            return
        conn.state = "draining"
        if conn.process is not None:
            conn.process.stop_sent = True
        conn.send_message({"type": "restart" if restart else "stop"})

    def worker_lost(self, conn: WorkerConnection) -> None:
        """A worker connection is gone: answer or requeue everything it held."""
        self._unauthenticated.discard(conn)
        if conn in self.workers:
            self.workers.remove(conn)
        tasks = list(conn.inflight.values())
        conn.inflight.clear()
        if conn.state in ("ready", "draining"):
            log.info("worker %s left with %d tasks in flight", conn.pid, len(tasks))
        requeue = []
        for index, task in enumerate(tasks):
            if task.timer is not None:
                task.timer.cancel()
                task.timer = None
            task.worker = None
            if task.future.done():
                continue
            if self.closing:
                task.future.set_exception(
                    TaskCancelled(f"task {task.name!r} not finished: the server shut down")
                )
            elif index > 0 or not task.started_at:
                requeue.append(task)  # never started: the worker runs tasks in order
            elif task.idempotent and task.runs < 2:
                self.counters["retried"] += 1
                log.warning("task %s#%d lost with worker %s; running it again", task.name, task.id, conn.pid)
                requeue.append(task)
            else:
                self.counters["failed"] += 1
                task.future.set_exception(
                    WorkerDied(f"worker {conn.pid} died while running task {task.name!r}")
                )
        for task in reversed(requeue):
            task.queued_at = time.monotonic()
            self.queue.appendleft(task)
        proc = conn.process
        if proc is not None and not proc.stop_sent and not self.closing:
            proc.kill("connection lost")
        if self._restart is not None:
            self._restart.connection_lost(conn)
        if not self.closing:
            self._dispatch()

    # -- supervision of local processes ------------------------------------------

    def _spawn(self, slot: int, role: str = "current") -> WorkerProcess | None:
        self._respawn_timers.pop(slot, None)
        cmd = [
            sys.executable,
            "-m",
            "wsdaemon",
            "worker",
            "--socket",
            self.socket_path,
            "--app",
            self.settings.app,
            "--log-level",
            self.settings.log_level,
            "--max-frame",
            str(self.settings.task_max_size),
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
            self._spawn(slot)

    def _supervise(self) -> None:
        now = time.monotonic()
        for proc in list(self.processes.values()):
            code = proc.popen.poll()
            if code is not None:
                self._process_exited(proc, code, now)
        self._expire_queue(now)

    def _process_exited(self, proc: WorkerProcess, code: int, now: float) -> None:
        self.processes.pop(proc.pid, None)
        self.counters["worker_exits"] += 1
        lived = now - proc.started_at
        how = f"killed by {_signal_name(-code)}" if code < 0 else f"exit code {code}"
        expected = self.closing or proc.stop_sent or proc.role == "retiring"
        level = logging.INFO if expected else logging.WARNING
        log.log(
            level,
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
            if lived >= STABLE_AFTER or proc.kill_reason == "timeout":
                self._failures[proc.slot] = 0
            self._schedule_respawn(proc.slot, crashed=proc.kill_reason != "timeout" and not expected)
        if self._restart is not None:
            self._restart.process_exited(proc)

    # -- rolling restart ---------------------------------------------------------

    def restart_workers(self) -> None:
        """Replace every worker, one at a time, without losing a task (SIGHUP).

        Local: a new process is started; once it has joined, the old one finishes
        the tasks it holds and exits. Remote: each is told to finish and re-execute
        itself. If a new local worker fails to join, the restart stops there and
        the remaining old workers keep serving.
        """
        if self.closing:
            return
        if self._restart is not None:
            log.info("worker restart in progress; another one follows it")
            self._restart.again = True
            return
        self.counters["restarts"] += 1
        self._restart = _Restart(self)
        self._restart.next_step()

    @property
    def restarting(self) -> bool:
        return self._restart is not None

    # -- inspection --------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        return {
            "workers": [
                {
                    "pid": conn.pid,
                    "remote": conn.remote,
                    "host": conn.worker_host,
                    "state": conn.state,
                    "inflight": len(conn.inflight),
                    "slot": conn.process.slot if conn.process is not None else None,
                }
                for conn in self.workers
            ],
            "processes": sorted(self.processes),
            "queued": len(self.queue),
            "restarting": self.restarting,
            **self.counters,
        }


class _Restart:
    """State of one rolling restart: which old worker is being replaced now."""

    def __init__(self, pool: WorkerPool) -> None:
        self.pool = pool
        self.slots = list(range(len(pool.slots)))
        self.remotes = [c for c in pool.workers if c.remote]
        self.candidate: WorkerProcess | None = None
        self.waiting_for: Any = None  # the old process or remote connection being retired
        self.timer: Any = None
        #: Another restart was asked for meanwhile: run it when this one ends.
        self.again = False
        log.info("restarting workers: %d local, %d remote", len(self.slots), len(self.remotes))

    def _active(self) -> bool:
        return self.pool._restart is self

    def next_step(self) -> None:
        pool = self.pool
        if not self._active():
            return
        self.waiting_for = None
        if self.slots:
            slot = self.slots.pop(0)
            self.candidate = pool._spawn(slot, role="candidate")
            if self.candidate is None:
                return self.abort("cannot start a new worker process")
            self.timer = pool.loop.call_later(
                RESTART_CONNECT_TIMEOUT, self._candidate_timeout, self.candidate
            )
            return
        while self.remotes:
            conn = self.remotes.pop(0)
            if conn.state == "ready" and not conn.transport_closed:
                self.waiting_for = conn
                pool._stop_worker(conn, restart=True)
                return
        log.info("workers restarted")
        pool._restart = None
        if self.again:
            pool.restart_workers()

    def candidate_ready(self, proc: WorkerProcess) -> None:
        if proc is not self.candidate or not self._active():
            return
        pool = self.pool
        if self.timer is not None:
            self.timer.cancel()
        self.candidate = None
        old = pool.slots[proc.slot]
        proc.role = "current"
        pool.slots[proc.slot] = proc
        timer = pool._respawn_timers.pop(proc.slot, None)
        if timer is not None:
            timer.cancel()
        if old is None:
            return self.next_step()
        old.role = "retiring"
        self.waiting_for = old
        if old.conn is not None and old.conn.state == "ready":
            pool._stop_worker(old.conn, restart=False)
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
        self.pool._restart = None


# -- helpers -----------------------------------------------------------------------


def read_token(path: str) -> bytes:
    """The shared secret for remote workers: the file's content without surrounding whitespace."""
    if not path:
        raise ValueError("--worker-listen needs --worker-token-file")
    with open(path, "rb") as f:
        mode = os.fstat(f.fileno()).st_mode
        token = f.read().strip()
    if len(token) < MIN_TOKEN_LENGTH:
        raise ValueError(f"worker token in {path} is shorter than {MIN_TOKEN_LENGTH} bytes")
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("worker token file %s is readable by others than its owner", path)
    return token


def parse_host_port(text: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``[V6]:PORT`` -> (host, port)."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"expected HOST:PORT, got {text!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port)


def bind_unix_socket(path: str) -> socket.socket:
    """A listening Unix socket at ``path``, only for this user; a stale socket file is replaced."""
    if os.path.exists(path):
        if not stat.S_ISSOCK(os.stat(path).st_mode):
            raise OSError(f"{path} exists and is not a socket")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(path)
        except OSError:
            os.unlink(path)  # nobody listens there: left over from a previous run
        else:
            raise OSError(f"{path} is in use by another process")
        finally:
            probe.close()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        old_umask = os.umask(0o177)
        try:
            sock.bind(path)
        finally:
            os.umask(old_umask)
        sock.listen(64)
    except OSError:
        sock.close()
        raise
    return sock


def _peer_credentials(sock: socket.socket) -> tuple[int, int | None]:
    try:
        pid, uid, _gid = _PEERCRED.unpack(
            sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size)
        )
    except (AttributeError, OSError):
        return 0, None
    return pid, uid


def _enable_keepalive(sock: socket.socket) -> None:
    """Notice a remote worker whose machine vanished, even while it computes silently."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for name, value in (("TCP_KEEPIDLE", 30), ("TCP_KEEPINTVL", 10), ("TCP_KEEPCNT", 3)):
        opt = getattr(socket, name, None)
        if opt is not None:
            sock.setsockopt(socket.IPPROTO_TCP, opt, value)


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"
