"""wsdaemon: a production WebSocket daemon on one selectors loop.

Everything an application needs is importable from here; the subpackages are
the daemon's own layers (see docs/architecture.md).
"""

__version__ = "0.1.0"

from .application import Application  # noqa: E402
from .proto.codes import CloseCode, ConnState  # noqa: E402
from .proto.errors import ConnectionClosedError, Reject  # noqa: E402
from .proto.http11 import QueryParams, Request  # noqa: E402
from .tasks import (  # noqa: E402
    NoWorkers,
    TaskCancelled,
    TaskError,
    TaskFuture,
    TaskQueueFull,
    TaskTimeout,
    WorkerDied,
)

__all__ = [
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
]
