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

    def __init__(
        self,
        reason: str,
        status: int = 400,
        headers: list[tuple[str, str]] | None = None,
        *,
        phrase: str | None = None,
    ):
        super().__init__(reason, code=CloseCode.PROTOCOL_ERROR, status=status)
        self.headers = headers or []
        #: The status line's reason phrase when not the standard one (an ``on_connect`` Reject's reason).
        self.phrase = phrase


class ConnectionClosedError(Exception):
    """Raised by ``send`` when the connection is already closing or closed."""


class Reject(Exception):
    """Raised by an ``on_connect`` handler: refuse the client with HTTP ``status`` and ``reason``.

    Every transport answers the handshake (or the long-polling open) with that
    status; nothing is upgraded and ``on_open`` is not called.
    """

    def __init__(self, status: int = 403, reason: str = "forbidden") -> None:
        if not isinstance(status, int) or not 400 <= status <= 599:
            raise ValueError(f"Reject needs an HTTP error status (400-599), not {status!r}")
        super().__init__(status, reason)
        self.status = status
        self.reason = str(reason)
