"""The daemon's side of the workers: the task queue and dispatch, the face the server uses.

Worker processes connect to a Unix socket (and, when configured, a TCP listener
for workers on other machines), see :mod:`.connection`. Every worker connection
is registered in the server's one selector, next to the browsers: the loop never
waits for a worker. The local processes are kept running by :mod:`.supervision`.

Dispatch: a submitted task goes to the ready worker with the fewest tasks in
flight, below ``--worker-max-inflight``; otherwise it waits in a queue of at most
``--task-queue-size`` tasks. A worker runs its tasks one after the other in the
order received, so of the tasks in flight on a worker only the first (the *head*)
is running: its timeout starts when it becomes the head, and when a worker is lost
only the head can have been started. The others go back to the front of the queue.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

from ..net.counters import TASK_BOUNDS, Histogram
from ..net.sockets import format_address
from ..proto import workerproto
from ..settings import Settings
from ..tasks import (
    TaskCancelled,
    TaskError,
    TaskFunction,
    TaskFuture,
    TaskQueueFull,
    TaskTimeout,
    WorkerDied,
)
from .connection import WorkerConnection, WorkerListeners
from .host import WorkerPoolHost
from .pending import PendingTask
from .supervision import Supervisor

log = logging.getLogger("wsdaemon.workers")


class WorkerPool:
    """Task dispatch to worker connections; owns the worker listeners and the supervisor.

    ``tasks`` are the application's declared task functions, by name.
    """

    def __init__(self, host: WorkerPoolHost, tasks: Mapping[str, TaskFunction]) -> None:
        self.host = host
        self.loop = host.loop
        self.tasks = tasks
        self.queue: deque[PendingTask] = deque()
        #: Authenticated worker connections, local and remote.
        self.workers: list[WorkerConnection] = []
        self._ids = itertools.count(1)
        self.closing = False
        self.counters = dict.fromkeys(("submitted", "completed", "failed", "timed_out", "retried"), 0)
        #: Seconds from submit to the answer, of the tasks that were answered (``/metrics``).
        self.durations = Histogram(TASK_BOUNDS)
        self.listeners = WorkerListeners(host, self)
        self.supervisor = Supervisor(
            host, self.listeners.socket_path, self._remote_workers, on_tick=self._expire_queue
        )

    @property
    def settings(self) -> Settings:
        """The host's settings of the moment: a reload (SIGHUP) may replace them."""
        return self.host.settings

    @property
    def max_inflight(self) -> int:
        return max(1, self.settings.worker_max_inflight)

    def _remote_workers(self) -> list[WorkerConnection]:
        return [c for c in self.workers if c.remote]

    # -- life cycle (called by the server) ---------------------------------------

    def start(self) -> None:
        self.supervisor.start()
        log.info(
            "worker pool: %d local workers on %s, %d tasks declared",
            len(self.supervisor.slots),
            self.listeners.socket_path,
            len(self.tasks),
        )

    def shutdown(self) -> None:
        """Take no more tasks, fail the queued ones, tell every worker to finish and exit."""
        if self.closing:
            return
        self.closing = True
        self.supervisor.shutdown()
        self.listeners.stop_accepting()
        self._fail_queue(lambda t: TaskCancelled(f"task {t.name!r} not run: the server is shutting down"))
        for conn in list(self.workers):
            conn.stop(restart=False)

    def close(self) -> None:
        """Fail what is left, stop every process (SIGTERM, then SIGKILL) and remove the socket."""
        self.shutdown()
        for conn in list(self.workers):
            conn.abort(None)
        self._fail_queue(lambda t: TaskCancelled(f"task {t.name!r} not run: the server shut down"))
        self.supervisor.close()
        self.listeners.close()

    def reload(self, settings: Any = None, old: Any = None) -> None:
        """SIGHUP: read the token file again, restart the workers so they load the code again."""
        self.listeners.reload_token()
        self.restart_workers()

    def restart_workers(self) -> None:
        """Replace every worker, one at a time, without losing a task (SIGHUP)."""
        self.supervisor.restart_workers()

    @property
    def restarting(self) -> bool:
        return self.supervisor.restart is not None

    # -- the application's API ---------------------------------------------------

    def submit(
        self,
        name: str,
        args: tuple | list = (),
        kwargs: dict | None = None,
        callback: Callable[[TaskFuture], Any] | None = None,
        timeout: float | None = None,
    ) -> TaskFuture:
        """Queue task ``name``; raises at once for what cannot be run (see :mod:`wsdaemon.tasks`)."""
        if self.closing:
            raise TaskCancelled("the server is shutting down")
        task_fn = self.tasks.get(name)
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
            task.on_worker = True
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
        if not task.on_worker:
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
        task.on_worker = False
        if was_head and inflight:
            self._start_head(conn)
        self._dispatch()
        self.durations.observe(time.monotonic() - task.queued_at)
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
        task.on_worker = False
        self.counters["timed_out"] += 1
        log.warning(
            "task %s#%d ran over its %.3g s timeout on %s; replacing the worker",
            task.name,
            task.id,
            task.timeout,
            conn,
        )
        task.future.set_exception(TaskTimeout(f"task {task.name!r} did not finish within {task.timeout:g} s"))
        self.supervisor.kill_worker(conn, "timeout")
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

    def worker_joined(self, conn: WorkerConnection, hello: dict[str, Any]) -> None:
        """An authenticated worker: welcome it and send it tasks."""
        missing = sorted(set(self.tasks) - set(hello.get("tasks") or ()))
        self.workers.append(conn)
        conn.send_message({"type": "welcome", "max_inflight": self.max_inflight})
        log.info(
            "worker %s joined (%s%s)%s",
            conn.pid,
            "remote " + format_address(conn.remote_address) if conn.remote else "local",
            f", host {conn.worker_host}" if conn.worker_host else "",
            f"; it lacks tasks {', '.join(missing)}" if missing else "",
        )
        self.supervisor.worker_joined(conn)
        self._dispatch()

    def worker_lost(self, conn: WorkerConnection) -> None:
        """A worker connection is gone: answer or requeue everything it held."""
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
            task.on_worker = False
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
        self.supervisor.connection_lost(conn)
        if not self.closing:
            self._dispatch()

    # -- inspection --------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        supervisor = self.supervisor
        workers = []
        for conn in self.workers:
            proc = supervisor.process_of(conn)
            workers.append(
                {
                    "pid": conn.pid,
                    "remote": conn.remote,
                    "host": conn.worker_host,
                    "state": conn.state,
                    "inflight": len(conn.inflight),
                    "slot": proc.slot if proc is not None else None,
                }
            )
        return {
            "workers": workers,
            "processes": sorted(supervisor.processes),
            "queued": len(self.queue),
            "restarting": self.restarting,
            **self.counters,
            "crash_replacements": supervisor.crash_replacements,
            "rolling_restarts": supervisor.rolling_restarts,
        }
