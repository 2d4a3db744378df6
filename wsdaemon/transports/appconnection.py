"""What the application sees of one client, whatever its transport.

:class:`AppConnection` is a mixin (it has no slots of its own) shared by the
RFC 6455, hixie and long-polling connections. It owns the life cycle towards the
application: ``on_open`` once, messages while open, ``on_close`` exactly once,
and an exception in a callback closes only this connection with 1011.
"""

from __future__ import annotations

import logging
from typing import Any

from ..net.sockets import format_address
from ..proto.codes import CLOSED, CONNECTING, OPEN, CloseCode

log = logging.getLogger("wsdaemon.app")


#: The application-facing state every transport keeps, declared as slots by each concrete class
#: (a mixin cannot hold slots beside a slotted stream connection).
APP_STATE_SLOTS = ("request", "subprotocol", "state", "close_code", "close_reason", "data")


class AppConnection:
    """Public API: ``send``, ``close``, ``request``, ``protocol``, ``subprotocol``, ``buffered_amount``."""

    __slots__ = ()

    #: Transport name shown to the application: "rfc6455", "hixie-76", "hixie-75", "long-polling".
    protocol = "unknown"

    # Concrete classes declare ``host`` (a StreamConnection has it) and APP_STATE_SLOTS.

    def _init_app_state(self, request: Any, subprotocol: str | None) -> None:
        """Set the attributes every transport shows the application, before ``on_open``."""
        self.request = request
        self.subprotocol = subprotocol
        self.state = CONNECTING
        self.close_code: int | None = None
        self.close_reason = ""
        #: Free for the application's own per-connection state.
        self.data: Any = None

    # -- the application's API ---------------------------------------------------

    #: What permessage-deflate parameters were agreed (a DeflateParams), None without compression.
    compression: Any = None

    def send(self, message: str | bytes, *, compress: bool | None = None) -> None:
        """Queue one message: ``str`` goes as text, ``bytes`` as binary.

        ``compress`` (on a connection that negotiated permessage-deflate): ``False`` sends this
        message uncompressed, ``True`` compresses it even below ``--compression-min-size``;
        ``None`` decides by size. Other connections ignore it.
        """
        raise NotImplementedError

    def close(self, code: int = CloseCode.NORMAL_CLOSURE, reason: str = "") -> None:
        """Start the closing handshake; ``on_close`` follows when it completes."""
        raise NotImplementedError

    @property
    def open(self) -> bool:
        """True between ``on_open`` and the start of the close: ``send`` works."""
        return self.state == OPEN

    @property
    def closed(self) -> bool:
        """True once ``on_close`` ran (or the connection ended before it opened)."""
        return self.state == CLOSED

    @property
    def server(self) -> Any:
        """The server this connection belongs to (publish, broadcast, timers)."""
        return self.host

    @property
    def remote_address(self) -> Any:
        """The client's address, ``(host, port)``, as ``request.remote_address``."""
        return self.request.remote_address

    # -- broadcast support: encode once per transport ----------------------------

    @classmethod
    def encode_message(cls, message: str | bytes) -> Any:
        """Wire form of ``message`` for this transport, shared by every receiver of a broadcast."""
        return message

    def send_encoded(self, encoded: Any) -> None:
        """Send what :meth:`encode_message` produced."""
        self.send(encoded)

    # -- delivery to the application ---------------------------------------------

    def _deliver_open(self) -> None:
        self.state = OPEN
        server = self.host
        server.connection_opened(self)
        log.debug(
            "open %s %s %s%s",
            self.protocol,
            format_address(self.request.remote_address),
            self.request.path,
            f" subprotocol={self.subprotocol}" if self.subprotocol else "",
        )
        try:
            server.app.handle_open(self)
        except Exception:
            self._callback_failed("on_open")

    def _deliver_message(self, message: str | bytes) -> None:
        try:
            self.host.app.handle_message(self, message)
        except Exception:
            self._callback_failed("on_message")

    def _deliver_close(self, code: int, reason: str) -> None:
        """Report the end of the connection to the application, once."""
        if self.state == CLOSED:
            return
        was_open = self.state != CONNECTING
        self.state = CLOSED
        self.close_code = code
        self.close_reason = reason
        self.host.connection_closed(self)
        if not was_open:
            return
        log.debug(
            "close %s %s code=%s reason=%r",
            self.protocol,
            format_address(self.request.remote_address),
            code,
            reason,
        )
        try:
            self.host.app.handle_close(self, code, reason)
        except Exception:
            log.exception("error in on_close for %s", self)

    def _callback_failed(self, where: str) -> None:
        log.exception("error in %s for %s; closing it with 1011", where, self)
        self.fail(CloseCode.INTERNAL_ERROR, "internal server error")

    def fail(self, code: int, reason: str) -> None:
        """Close because of an error on our side or the peer's (overridden per transport)."""
        self.close(code, reason)

    # -- the server's periodic checks (transports that need them override) -------

    def check_keepalive(self, now: float, interval: float, timeout: float) -> None:
        """Ping an idle peer, drop one that stopped answering (RFC 6455 only)."""

    def check_idle(self, now: float, limit: float) -> None:
        """Close a peer silent for ``limit`` seconds; transports with their own idle deadline do nothing."""
