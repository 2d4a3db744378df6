"""wsdaemon: a production WebSocket daemon on one selectors loop."""

__version__ = "0.1.0"

from .application import Application  # noqa: E402

__all__ = ["Application", "__version__"]
