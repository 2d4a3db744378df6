"""Admission: who may come in, decided at accept before a byte is read.

Two checks, in this order: ``max_connects_per_second`` per client address (a
token bucket, :mod:`.ratelimit`; addresses in ``trusted_proxies`` are exempt),
then ``max_connections`` counted over the accepted client sockets. A client
refused by either on a plain port reads a 503 with ``Retry-After`` (see
:mod:`.refusal`); on a TLS port it is closed, no handshake being spent on it, as
is every client while ``MAX_REFUSING`` refusals are still being answered. Every
refusal is counted by reason (``REFUSED_AT_ACCEPT``, for ``/metrics``).
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable
from typing import Any

from .counters import REFUSED_AT_ACCEPT
from .loop import EVENT_READ
from .ratelimit import ConnectRate
from .refusal import RefusedConnection, over_capacity_response, over_rate_response
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
        #: ``client_closed(fileno)``: an admitted socket is being closed, it no longer counts (the
        #: set's own discard: no Python frame per connection).
        self.client_closed: Callable[[int], None] = self.clients.discard
        #: True from the first refusal until a client is admitted again.
        self.over_capacity = False
        self._refusing: set[RefusedConnection] = set()
        #: ``max_connects_per_second``: the buckets per address and the summary log of refusals.
        self.rate = ConnectRate(host.loop, self._rate_limits)

    def _rate_limits(self) -> tuple[float, int]:
        settings = self.host.settings
        return settings.max_connects_per_second, settings.max_connects_burst

    def start(self) -> None:
        """Start the sweep of the rate buckets (a server component: started with the server)."""
        self.rate.start()

    def close(self) -> None:
        self.rate.close()

    @property
    def refusing(self) -> int:
        """Refused clients still reading their 503."""
        return len(self._refusing)

    def admit(self, client: socket.socket, address: Any, secure: bool = False, rated: bool = True) -> bool:
        """Whether a freshly accepted socket may be served; refuses it over the connection rate of its
        address (unless ``rated`` is False: a socket a sibling process accepted) or over
        ``max_connections``.

        An admitted socket counts until :meth:`client_closed`. A refused one is
        taken care of here: ``secure`` (TLS port) ones are closed, plain ones
        get a 503 unless ``MAX_REFUSING`` refusals are in progress.
        """
        settings = self.host.settings
        rate = settings.max_connects_per_second
        if rated and rate > 0 and not self.rate.allow(address, rate, settings.max_connects_burst):
            trust = getattr(self.host, "proxy_trust", None)
            if trust is None or not trust.trusts(str(address[0])):
                REFUSED_AT_ACCEPT["rate"] += 1
                self.rate.refused(address)
                self._refuse(client, address, secure, over_rate_response())
                return False
        limit = settings.max_connections
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
        self._refuse(client, address, secure, over_capacity_response())
        return False

    def _refuse(self, client: socket.socket, address: Any, secure: bool, response: bytes) -> None:
        if secure or len(self._refusing) >= MAX_REFUSING:
            client.close()
            return
        refused = _CountedRefusal(self, client, address)
        self.host.loop.register(client, EVENT_READ, refused)
        self._refusing.add(refused)
        refused.refuse(response)

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
