"""Exceptions shared by the codecs and connections."""

from .codes import CloseCode


class ProtocolError(Exception):
    """A peer broke its protocol: close with ``code`` and ``reason`` (WebSocket) or HTTP ``status``."""

    def __init__(self, reason: str, code: int = CloseCode.PROTOCOL_ERROR, status: int = 400) -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code
        self.status = status


class HandshakeError(ProtocolError):
    """A handshake request that gets an HTTP error response instead of an upgrade."""

    def __init__(self, reason: str, status: int = 400, headers: list[tuple[str, str]] | None = None):
        super().__init__(reason, code=CloseCode.PROTOCOL_ERROR, status=status)
        self.headers = headers or []


class ConnectionClosedError(Exception):
    """Raised by ``send`` when the connection is already closing or closed."""
