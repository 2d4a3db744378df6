"""The public API: exactly what ``wsdaemon.__all__`` lists, importable from the package, documented."""

import wsdaemon

#: Changing the public API is a decision: update this list (and docs/api.md) with it.
PUBLIC = {
    "Application",
    "CloseCode",
    "ConnState",
    "ConnectionClosedError",
    "NoWorkers",
    "QueryParams",
    "Reject",
    "Request",
    "TaskCancelled",
    "TaskError",
    "TaskFuture",
    "TaskQueueFull",
    "TaskTimeout",
    "WorkerDied",
    "__version__",
}


def test_all_is_exactly_the_public_api():
    assert set(wsdaemon.__all__) == PUBLIC
    assert len(wsdaemon.__all__) == len(PUBLIC)  # no name twice


def test_every_public_name_is_importable_and_documented():
    for name in PUBLIC - {"__version__"}:
        obj = getattr(wsdaemon, name)
        # A class's own docstring: inspect.getdoc would accept one inherited from its base.
        own = vars(obj).get("__doc__") if isinstance(obj, type) else obj.__doc__
        assert own and own.strip(), f"{name} has no docstring of its own"
    assert isinstance(wsdaemon.__version__, str)


def test_the_task_errors_are_task_errors():
    for name in ("NoWorkers", "TaskCancelled", "TaskQueueFull", "TaskTimeout", "WorkerDied"):
        assert issubclass(getattr(wsdaemon, name), wsdaemon.TaskError)


def test_close_codes_are_the_rfc_numbers():
    assert wsdaemon.CloseCode.NORMAL_CLOSURE == 1000
    assert wsdaemon.CloseCode.INTERNAL_ERROR == 1011
    assert wsdaemon.ConnState.OPEN.label == "open"


def test_deep_imports_keep_working():
    from wsdaemon.application import Application
    from wsdaemon.tasks import TaskError

    assert Application is wsdaemon.Application and TaskError is wsdaemon.TaskError


def test_reject_carries_an_http_error_status():
    exc = wsdaemon.Reject(403, "bad token")
    assert (exc.status, exc.reason) == (403, "bad token")
    for status in (200, 101, 600, "403"):
        try:
            wsdaemon.Reject(status, "x")
        except ValueError:
            continue
        raise AssertionError(f"Reject({status!r}) accepted")
