"""Admission: ``max_connections`` counted over the accepted client sockets, and refusals past it.

A client over the limit on a plain port reads a 503 (see :mod:`.refusal`); on
a TLS port it is closed, no handshake being spent on it, as is every client
while ``MAX_REFUSING`` refusals are still being answered. Refusals are counted
(``REFUSED_AT_ACCEPT``, for ``/metrics``).
"""

from __future__ import annotations

import logging
import socket
from typing import Any

from .counters import REFUSED_AT_ACCEPT
from .loop import EVENT_READ
from .refusal import RefusedConnection, over_capacity_response
from .stream import StreamHost

#: The server's logger: these lines were the server's before admission had a module.
log = logging.getLogger("wsdaemon.server")

#: Most clients at once that get a 503 over ``max_connections``; past it they are just closed.
MAX_REFUSING = 64


class Admission:
    """Owns the descriptors of the served client sockets and decides whether one more may come in."""

    def __init__(self, host: StreamHost) -> None:
        self.host = host
        #: Descriptors of the admitted client sockets still open (``max_connections`` counts them).
        self.clients: set[int] = set()
        #: True from the first refusal until a client is admitted again.
        self.over_capacity = False
        self._refusing: set[RefusedConnection] = set()

    @property
    def refusing(self) -> int:
        """Refused clients still reading their 503."""
        return len(self._refusing)

    def admit(self, client: socket.socket, address: Any, secure: bool = False) -> bool:
        """Whether a freshly accepted socket may be served; refuses it over ``max_connections``.

        An admitted socket counts until :meth:`client_closed`. A refused one is
        taken care of here: ``secure`` (TLS port) ones are closed, plain ones
        get a 503 unless ``MAX_REFUSING`` refusals are in progress.
        """
        limit = self.host.settings.max_connections
        if not limit or len(self.clients) < limit:
            if self.over_capacity:
                self.over_capacity = False
                log.info("below the connection limit again (%d open)", len(self.clients))
            self.clients.add(client.fileno())
            return True
        if not self.over_capacity:
            self.over_capacity = True
            log.warning("connection limit of %d reached; refusing new clients", limit)
        REFUSED_AT_ACCEPT["limit"] += 1
        if secure or len(self._refusing) >= MAX_REFUSING:
            client.close()
            return False
        refused = _CountedRefusal(self, client, address)
        self.host.loop.register(client, EVENT_READ, refused)
        self._refusing.add(refused)
        refused.refuse(over_capacity_response())
        return False

    def client_closed(self, fileno: int) -> None:
        """An admitted socket is being closed: it no longer counts."""
        self.clients.discard(fileno)

    def refusal_done(self, refused: RefusedConnection) -> None:
        self._refusing.discard(refused)


class _CountedRefusal(RefusedConnection):
    """A 503 that counts towards ``MAX_REFUSING`` until its socket is closed."""

    __slots__ = ("admission",)

    def __init__(self, admission: Admission, sock: socket.socket, address: Any) -> None:
        super().__init__(admission.host, sock, address)
        self.admission = admission

    def connection_lost(self, exc: BaseException | None) -> None:
        self.admission.refusal_done(self)
