"""The worker pool in process: an EventLoop run by the test, workers played by sockets speaking workerproto."""

import os
import socket
import time

import pytest

from wsdaemon.application import Application
from wsdaemon.net.loop import EventLoop
from wsdaemon.proto import workerproto
from wsdaemon.settings import Settings
from wsdaemon.tasks import TaskQueueFull, TaskTimeout, WorkerDied
from wsdaemon.workers.pool import WorkerPool

TOKEN = "a-token-of-at-least-16-bytes"


class Host:
    """What a WorkerPool needs of the server: the loop, live settings, the deadline service."""

    def __init__(self, loop: EventLoop, settings: Settings) -> None:
        self.loop = loop
        self.settings = settings
        self.watched: set = set()
        self.clients: set[int] = set()  # StreamConnection of today discards closed sockets here

    def watch(self, conn) -> None:
        self.watched.add(conn)

    def unwatch(self, conn) -> None:
        self.watched.discard(conn)

    def client_closed(self, fileno: int) -> None:
        self.clients.discard(fileno)


class FakeWorker:
    """A worker played by the test: a non-blocking socket, read whenever the test polls it."""

    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        self.sock = sock
        self.decoder = workerproto.FrameDecoder()
        self.received: list[dict] = []
        self.eof = False

    def send(self, message: dict) -> None:
        self.sock.sendall(workerproto.encode(message))

    def hello(self, **extra) -> None:
        self.send({"type": "hello", "version": workerproto.PROTOCOL_VERSION, "pid": 0, **extra})

    def pump(self) -> "FakeWorker":
        while not self.eof:
            try:
                data = self.sock.recv(65536)
            except BlockingIOError:
                break
            except ConnectionError:
                data = b""
            if not data:
                self.eof = True
                break
            self.received.extend(self.decoder.feed(data))
        return self

    def of_type(self, kind: str) -> list[dict]:
        return [m for m in self.pump().received if m["type"] == kind]

    def answer(self, task: dict, value) -> None:
        self.send({"type": "result", "id": task["id"], "value": value})

    def close(self) -> None:
        self.sock.close()


def run_until(loop: EventLoop, predicate, timeout: float = 5.0) -> None:
    """Run the loop until ``predicate()`` holds (checked every few milliseconds)."""
    deadline = time.monotonic() + timeout

    def check() -> None:
        if predicate() or time.monotonic() > deadline:
            loop.stop()

    handle = loop.call_every(0.005, check)
    try:
        loop.run()
    finally:
        handle.cancel()
    assert predicate()


def run_for(loop: EventLoop, seconds: float) -> None:
    loop.call_later(seconds, loop.stop)
    loop.run()


def make_app() -> Application:
    app = Application("pooltest")

    @app.task
    def add(a, b):
        return a + b

    @app.task(idempotent=True)
    def lookup(key):
        return key

    return app


@pytest.fixture
def make_pool(tmp_path):
    made = []

    def make(**overrides) -> tuple[EventLoop, WorkerPool]:
        token_file = tmp_path / "token"
        token_file.write_text(TOKEN)
        os.chmod(token_file, 0o600)
        options = {
            "workers": 0,
            "worker_socket": str(tmp_path / "workers.sock"),
            "worker_listen": "127.0.0.1:0",
            "worker_token_file": str(token_file),
            "task_timeout": 0,
        }
        options.update(overrides)
        loop = EventLoop()
        pool = WorkerPool(Host(loop, Settings(**options)), make_app().tasks)
        pool.start()
        made.append((loop, pool))
        return loop, pool

    yield make
    for loop, pool in made:
        pool.close()
        loop.close()


def local_worker(loop: EventLoop, pool: WorkerPool) -> FakeWorker:
    """A worker on the Unix socket that has said hello and been welcomed."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(pool.listeners.socket_path)
    worker = FakeWorker(sock)
    worker.hello(tasks=["add", "lookup"])
    run_until(loop, lambda: worker.of_type("welcome"))
    return worker


def remote_socket(pool: WorkerPool) -> socket.socket:
    (tcp,) = [lst.sock for lst in pool.listeners.listeners if lst.sock.family != socket.AF_UNIX]
    return socket.create_connection(tcp.getsockname())


def test_local_hello_is_welcomed(make_pool):
    loop, pool = make_pool(worker_max_inflight=3)
    worker = local_worker(loop, pool)
    assert worker.of_type("welcome") == [{"type": "welcome", "max_inflight": 3}]
    (info,) = pool.stats()["workers"]
    assert info["state"] == "ready" and not info["remote"] and info["pid"] == os.getpid()


def test_remote_hello_with_the_token_is_welcomed_and_a_bad_token_refused(make_pool):
    loop, pool = make_pool()
    good = FakeWorker(remote_socket(pool))
    good.hello(token=TOKEN, pid=4242, host="box")
    bad = FakeWorker(remote_socket(pool))
    bad.hello(token="not-the-token-at-all")
    run_until(loop, lambda: good.of_type("welcome") and bad.pump().eof)
    assert bad.of_type("refused") == [{"type": "refused", "reason": "bad token"}]
    (info,) = pool.stats()["workers"]
    assert info == {
        "pid": 4242,
        "remote": True,
        "host": "box",
        "state": "ready",
        "inflight": 0,
        "slot": None,
    }


def test_something_else_than_hello_first_is_refused(make_pool):
    loop, pool = make_pool()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(pool.listeners.socket_path)
    worker = FakeWorker(sock)
    worker.send({"type": "result", "id": 1, "value": 0})
    run_until(loop, lambda: worker.pump().eof)
    assert worker.of_type("refused") == [{"type": "refused", "reason": "expected hello"}]
    assert pool.stats()["workers"] == []


def test_a_task_is_dispatched_and_answered(make_pool):
    loop, pool = make_pool()
    worker = local_worker(loop, pool)
    future = pool.submit("add", (2, 3))
    run_until(loop, lambda: worker.of_type("task"))
    (task,) = worker.of_type("task")
    assert task["name"] == "add" and task["args"] == [2, 3] and task["kwargs"] == {}
    worker.answer(task, 5)
    run_until(loop, future.done)
    assert future.result() == 5
    stats = pool.stats()
    assert stats["submitted"] == 1 and stats["completed"] == 1 and stats["queued"] == 0


def test_a_worker_gets_at_most_max_inflight_tasks(make_pool):
    loop, pool = make_pool(worker_max_inflight=2)
    worker = local_worker(loop, pool)
    futures = [pool.submit("add", (i, 0)) for i in range(3)]
    run_until(loop, lambda: len(worker.of_type("task")) == 2)
    run_for(loop, 0.05)
    assert len(worker.of_type("task")) == 2
    assert pool.stats()["queued"] == 1
    worker.answer(worker.of_type("task")[0], 0)
    run_until(loop, lambda: len(worker.of_type("task")) == 3)
    for task in worker.of_type("task")[1:]:
        worker.answer(task, task["args"][0])
    run_until(loop, lambda: all(f.done() for f in futures))
    assert [f.result() for f in futures] == [0, 1, 2]


def test_a_full_queue_fails_the_submission_at_once(make_pool):
    loop, pool = make_pool(task_queue_size=2)
    queued = [pool.submit("add", (1, 1)), pool.submit("add", (2, 2))]
    with pytest.raises(TaskQueueFull):
        pool.submit("add", (3, 3))
    assert pool.stats()["queued"] == 2 and not any(f.done() for f in queued)
    worker = local_worker(loop, pool)  # a free worker drains the queue
    run_until(loop, lambda: worker.of_type("task"))
    pool.submit("add", (3, 3))


def test_a_task_over_its_timeout_fails_and_its_worker_is_dropped(make_pool):
    loop, pool = make_pool()
    worker = local_worker(loop, pool)
    future = pool.submit("add", (1, 2), timeout=0.1)
    run_until(loop, future.done)
    assert isinstance(future.exception(), TaskTimeout)
    run_until(loop, lambda: worker.pump().eof)
    stats = pool.stats()
    assert stats["timed_out"] == 1 and stats["workers"] == []


def test_an_idempotent_task_of_a_dropped_worker_runs_again_on_another_once(make_pool):
    loop, pool = make_pool()
    first = local_worker(loop, pool)
    second = local_worker(loop, pool)
    future = pool.submit("lookup", ("k",))
    run_until(loop, lambda: first.of_type("task"))
    (task,) = first.of_type("task")
    first.close()
    run_until(loop, lambda: second.of_type("task"))
    run_for(loop, 0.05)
    (again,) = second.of_type("task")
    assert again["id"] == task["id"] and again["args"] == ["k"]
    second.answer(again, "v")
    run_until(loop, future.done)
    assert future.result() == "v"
    run_for(loop, 0.05)
    assert len(second.of_type("task")) == 1
    stats = pool.stats()
    assert stats["retried"] == 1 and stats["completed"] == 1 and len(stats["workers"]) == 1


def test_a_non_idempotent_task_of_a_dropped_worker_fails_with_worker_died(make_pool):
    loop, pool = make_pool(worker_max_inflight=2)
    first = local_worker(loop, pool)
    running = pool.submit("add", (1, 1))
    waiting = pool.submit("add", (2, 2))  # behind the head on the same worker: never started
    run_until(loop, lambda: len(first.of_type("task")) == 2)
    second = local_worker(loop, pool)
    first.close()
    run_until(loop, running.done)
    assert isinstance(running.exception(), WorkerDied)
    run_until(loop, lambda: second.of_type("task"))
    run_for(loop, 0.05)
    (moved,) = second.of_type("task")
    assert moved["args"] == [2, 2]
    second.answer(moved, 4)
    run_until(loop, waiting.done)
    assert waiting.result() == 4
    stats = pool.stats()
    assert stats["retried"] == 0 and stats["failed"] == 1
