"""wsdaemon: a production WebSocket daemon on one selectors loop."""

__version__ = "0.1.0"
