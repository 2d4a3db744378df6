"""The application's side of tasks, in process: declaring, futures, running one task."""

import pytest

from wsdaemon.application import Application
from wsdaemon.tasks import (
    InvalidStateError,
    NoWorkers,
    TaskCancelled,
    TaskError,
    TaskFuture,
    exception_type_name,
    run_task,
)


class BadMove(Exception):
    pass


def make_app():
    app = Application("t")

    @app.task
    def add(a, b=0):
        return a + b

    @app.task(name="slow.path", idempotent=True, timeout=2.5)
    def path(n):
        return list(range(n))

    @app.task
    def explode(kind):
        if kind == "value":
            raise ValueError("bad value")
        raise BadMove("e2-e5 is not a move")

    return app


def test_declaring_tasks():
    app = make_app()
    assert sorted(app.tasks) == ["add", "explode", "slow.path"]
    path = app.tasks["slow.path"]
    assert path.idempotent and path.timeout == 2.5
    assert not app.tasks["add"].idempotent and app.tasks["add"].timeout is None
    assert app.tasks["add"](2, b=3) == 5  # still callable in process
    with pytest.raises(ValueError, match="declared twice"):
        app.task(name="add")(lambda: None)


def test_submit_without_a_worker_pool_raises():
    app = make_app()
    with pytest.raises(NoWorkers):
        app.submit("add", 1, 2)
    with pytest.raises(NoWorkers):
        app.tasks["add"].submit(1, 2)


def test_run_task_result_and_errors():
    tasks = make_app().tasks
    assert run_task(tasks, "add", [1], {"b": 2}) == {"type": "result", "value": 3}
    error = run_task(tasks, "explode", ["value"], {})
    assert error["type"] == "error"
    assert (error["error_type"], error["message"]) == ("ValueError", "bad value")
    assert "raise ValueError" in error["traceback"]
    error = run_task(tasks, "explode", ["move"], {})
    assert error["error_type"] == f"{__name__}.BadMove"
    assert error["message"] == "e2-e5 is not a move"
    assert run_task(tasks, "nope", [], {})["error_type"] == "UnknownTask"
    assert run_task(tasks, "add", [], {})["error_type"] == "TypeError"


def test_exception_type_names():
    assert exception_type_name(KeyError("k")) == "KeyError"
    assert exception_type_name(BadMove()) == f"{__name__}.BadMove"


def test_future_result_and_callbacks():
    future = TaskFuture("add")
    seen = []
    future.add_done_callback(lambda f: seen.append(("first", f.result())))
    assert not future.done()
    with pytest.raises(InvalidStateError):
        future.result()
    future.set_result(5)
    future.set_result(6)  # ignored: a future is answered once
    assert future.done() and future.result() == 5 and future.exception() is None
    future.add_done_callback(lambda f: seen.append(("late", f.result())))
    assert seen == [("first", 5), ("late", 5)]


def test_future_error_and_failing_callback():
    future = TaskFuture("x")
    seen = []

    def broken(f):
        raise RuntimeError("callback bug")

    future.add_done_callback(broken)
    future.add_done_callback(lambda f: seen.append(f.exception()))
    future.set_exception(TaskError("ValueError", "nope"))
    assert isinstance(seen[0], TaskError)
    assert (seen[0].type, seen[0].message) == ("ValueError", "nope")
    assert str(seen[0]) == "ValueError: nope"
    with pytest.raises(TaskError):
        future.result()


def test_future_cancel():
    future = TaskFuture("x")
    hook = []
    future._on_cancel = hook.append
    assert future.cancel()
    assert hook == [future]
    assert future.cancelled() and future.done()
    with pytest.raises(TaskCancelled):
        future.result()
    assert not future.cancel()
    future.set_result(1)  # a late answer is ignored
    assert future.cancelled()
