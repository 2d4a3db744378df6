"""What the application sees of one client, whatever its transport.

:class:`AppConnection` is a mixin (it has no slots of its own) shared by the
RFC 6455, hixie and long-polling connections. It owns the life cycle towards the
application: ``on_open`` once, messages while open, ``on_close`` exactly once,
and an exception in a callback closes only this connection with 1011.
"""

from __future__ import annotations

import logging
from collections.abc import Hashable, KeysView
from typing import Any

from ..proto.codes import CLOSED, CONNECTING, OPEN, CloseCode, ConnState
from ..proto.errors import ConnectionClosedError

log = logging.getLogger("wsdaemon.app")

_NO_ROOMS: KeysView[str] = {}.keys()


#: The application-facing state every transport keeps, declared as slots by each concrete class
#: (a mixin cannot hold slots beside a slotted stream connection).
APP_STATE_SLOTS = ("request", "subprotocol", "state", "close_code", "close_reason", "data", "user", "_rooms")


class AppConnection:
    """Public API: ``send``, ``close``, ``request``, ``user``, ``protocol``, ``subprotocol``,
    ``buffered_amount``, ``join`` / ``leave`` / ``leave_all`` / ``rooms``."""

    __slots__ = ()

    #: Transport name shown to the application: "rfc6455", "hixie-76", "hixie-75", "long-polling".
    protocol = "unknown"
    #: Connections with the same wire format share one encoding of a broadcast or publish.
    wire_format = "unknown"

    # Concrete classes declare ``host`` (a StreamConnection has it) and APP_STATE_SLOTS.

    def _init_app_state(self, request: Any, subprotocol: str | None) -> None:
        """Set the attributes every transport shows the application, before ``on_open``."""
        if request is not None:
            request.headers.compact()  # kept for the application, which rarely reads a header again
        self.request = request
        self.subprotocol = subprotocol
        self.state = CONNECTING
        self.close_code: int | None = None
        self.close_reason = ""
        #: Free for the application's own per-connection state.
        self.data: Any = None
        #: What the application's ``on_connect`` returned for this client (None without one).
        self.user: Any = None
        #: Room name -> Room, for the rooms this connection is in (None until it joins one).
        self._rooms: dict[str, Any] | None = None

    # -- the application's API ---------------------------------------------------

    #: What permessage-deflate parameters were agreed (a DeflateParams), None without compression.
    compression: Any = None

    def send(
        self,
        message: str | bytes,
        *,
        key: Hashable | None = None,
        volatile: bool = False,
        compress: bool | None = None,
    ) -> None:
        """Queue one message: ``str`` goes as text, ``bytes`` as binary.

        ``key``: conflated, an unsent message with the same key is replaced by this
        one. ``volatile``: dropped when the connection is backlogged (docs/rooms.md).
        ``compress`` (on a connection that negotiated permessage-deflate): ``False`` sends this
        message uncompressed, ``True`` compresses it even below ``--compression-min-size``;
        ``None`` decides by size. Other connections ignore it.
        """
        raise NotImplementedError

    def _send_flagged(self, message: str | bytes, key: Hashable | None, volatile: bool) -> None:
        """``send`` with ``key`` or ``volatile``: the plain path stays in each transport's ``send``."""
        if self.state != OPEN:
            raise ConnectionClosedError(f"connection is {ConnState(self.state).label}")
        if not isinstance(message, (str, bytes, bytearray, memoryview)):
            raise TypeError(f"send() takes str or bytes, not {type(message).__name__}")
        encoded = self.encode_message(message if type(message) is str else bytes(message))
        if encoded is None:
            raise TypeError(f"a {self.protocol} connection carries text only: send a str")
        if volatile and self.backlogged:
            self.dropped += 1
            return
        if key is None:
            self.send_encoded(encoded)
        else:
            self.send_encoded_keyed(encoded, key)

    @property
    def backlogged(self) -> bool:
        """True while earlier messages still wait to leave the server: a volatile send is dropped."""
        return False

    # -- rooms -------------------------------------------------------------------

    def join(self, room: str) -> bool:
        """Enter ``room`` (O(1)); False when already in it. A close leaves every room."""
        if self.state == CLOSED:
            raise ConnectionClosedError("connection is closed")
        return self.host.room_registry.join(self, room)

    def leave(self, room: str) -> bool:
        """Leave ``room`` (O(1)); False when not in it. An empty room disappears."""
        return self.host.room_registry.leave(self, room)

    def leave_all(self) -> None:
        """Leave every room this connection is in."""
        if self._rooms:
            self.host.room_registry.leave_all(self)

    @property
    def rooms(self) -> KeysView[str]:
        """The names of the rooms this connection is in (a live, read-only view)."""
        rooms = self._rooms
        return rooms.keys() if rooms is not None else _NO_ROOMS

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

    def send_encoded_keyed(self, encoded: Any, key: Hashable) -> None:
        """Send what :meth:`encode_message` produced, conflated under ``key``."""
        self.send_encoded(encoded)

    # -- delivery to the application ---------------------------------------------

    def _deliver_open(self) -> None:
        self.state = OPEN
        server = self.host
        server.connection_opened(self)
        connection_log = server.connection_log
        if connection_log.enabled or log.isEnabledFor(logging.DEBUG):  # its lines go to ``log``
            connection_log.opened(self)
        try:
            server.app.handle_open(self)
        except Exception:
            self._callback_failed("on_open")

    def _deliver_message(self, message: str | bytes) -> None:
        try:
            self.host.app.message_handler(self, message)
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
        if self._rooms:
            self.host.room_registry.leave_all(self)
        if not was_open:
            return
        connection_log = self.host.connection_log
        if connection_log.enabled or log.isEnabledFor(logging.DEBUG):
            connection_log.closed(self, code, reason)
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
