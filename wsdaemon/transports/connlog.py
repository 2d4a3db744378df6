"""One log line per connection opened and closed, bounded: at most ``--log-connections-rate`` a second.

Off by default (``--log-connections off``: the lines stay at DEBUG and the
server's summary line says how many came and went). On, each open and close is
an INFO line with structured fields (``event``, ``remote``, ``transport``,
``path``, ``code``, ``reason``, ``duration``) that ``--log-format json`` shows
as keys. Past the rate the lines are dropped and counted, and one WARNING line
says how many, so a reconnect storm cannot fill the disk.
"""

from __future__ import annotations

import logging
from typing import Any

from ..net.sockets import format_address

log = logging.getLogger("wsdaemon.app")  # where these lines always were


class ConnectionLog:
    """The open and close lines of every transport, rate-limited per one-second window."""

    __slots__ = ("loop", "enabled", "rate", "_window", "_count", "_suppressed", "_flush_timer")

    def __init__(self, loop: Any, enabled: bool = False, rate: int = 100) -> None:
        self.loop = loop
        self.enabled = enabled
        self.rate = rate
        self._window = 0.0
        self._count = 0
        self._suppressed = 0
        self._flush_timer: Any = None

    def reload(self, settings: Any, old: Any = None) -> None:
        self.enabled = settings.log_connections
        self.rate = settings.log_connections_rate

    def opened(self, conn: Any) -> None:
        if not self.enabled:
            if log.isEnabledFor(logging.DEBUG):
                request = conn.request
                log.debug(
                    "open %s %s %s", conn.protocol, format_address(request.remote_address), request.path
                )
            return
        request = conn.request
        if self._allow():
            log.info(
                "open %s %s %s",
                conn.protocol,
                format_address(request.remote_address),
                request.path,
                extra={
                    "event": "open",
                    "remote": format_address(request.remote_address),
                    "transport": conn.protocol,
                    "path": request.path,
                },
            )

    def closed(self, conn: Any, code: int, reason: str) -> None:
        if not self.enabled:
            if log.isEnabledFor(logging.DEBUG):
                address = format_address(conn.request.remote_address)
                log.debug("close %s %s code=%s reason=%r", conn.protocol, address, code, reason)
            return
        request = conn.request
        if self._allow():
            duration = (
                round(max(0.0, self.loop.now - request.received_at), 3) if request.received_at else None
            )
            log.info(
                "close %s %s code=%s reason=%r after %ss",
                conn.protocol,
                format_address(request.remote_address),
                code,
                reason,
                duration,
                extra={
                    "event": "close",
                    "remote": format_address(request.remote_address),
                    "transport": conn.protocol,
                    "path": request.path,
                    "code": code,
                    "reason": reason,
                    "duration": duration,
                },
            )

    def _allow(self) -> bool:
        now = self.loop.now
        if now - self._window >= 1.0:
            self._window = now
            self._count = 0
        if self._count < self.rate:
            self._count += 1
            return True
        self._suppressed += 1
        if self._flush_timer is None:
            self._flush_timer = self.loop.call_later(1.0, self.flush)
        return False

    def flush(self) -> None:
        """The WARNING line for what the rate dropped (a second after the first one dropped)."""
        self._flush_timer = None
        if self._suppressed:
            count, self._suppressed = self._suppressed, 0
            log.warning(
                "%d connection open/close lines not logged (over %d a second)",
                count,
                self.rate,
                extra={"event": "suppressed", "count": count},
            )
