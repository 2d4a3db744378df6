"""Connection attempts per second per client address: a token bucket per address, checked at accept.

Each address has a bucket of ``burst`` tokens refilled at ``rate`` a second; an
accepted socket takes one, and a socket that finds its bucket empty is refused
before anything is read from it (see :mod:`.admission`). IPv4 addresses (and
IPv4-mapped IPv6 ones) each have a bucket; IPv6 addresses share one per /64,
the block one host is usually given.

The table is bounded: at most ``MAX_BUCKETS`` entries, the oldest one evicted
(O(1), by insertion order) to make room, and a timer every ``SWEEP_INTERVAL``
drops the buckets that have refilled (a full bucket is the same as none). No
lookup scans the table.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable
from typing import Any

from .loop import EventLoop, TimerHandle

log = logging.getLogger("wsdaemon.server")

#: Most addresses tracked at once (about 100 bytes each).
MAX_BUCKETS = 65536
#: Seconds between sweeps of the refilled buckets.
SWEEP_INTERVAL = 5.0
#: Seconds between the summary lines of refusals (never a line per refusal).
LOG_INTERVAL = 1.0
#: Addresses named in one summary line; the others are only counted.
_LOGGED_ADDRESSES = 64


def bucket_key(address: Any) -> Any:
    """What an address is counted under: the IPv4 address, or the /64 of an IPv6 one."""
    host = address[0] if isinstance(address, tuple) else address
    if not isinstance(host, str) or ":" not in host:
        return host
    if host.startswith("::ffff:") and "." in host:
        return host[7:]
    try:
        return socket.inet_pton(socket.AF_INET6, host.partition("%")[0])[:8]
    except OSError:
        return host


class ConnectRate:
    """Token buckets per client address, plus the rate-limited log of what they refused.

    ``limits()`` returns the live ``(rate, burst)`` (a reload may change them).
    """

    def __init__(self, loop: EventLoop, limits: Callable[[], tuple[float, int]]) -> None:
        self.loop = loop
        self.limits = limits
        #: key -> [tokens, monotonic time they were counted at]; insertion order is age.
        self.buckets: dict[Any, list[float]] = {}
        self._sweeper: TimerHandle | None = None
        self._log_timer: TimerHandle | None = None
        self._refused_since_log: dict[str, int] = {}
        self._refused_unnamed = 0

    def start(self) -> None:
        if self._sweeper is None:
            self._sweeper = self.loop.call_every(SWEEP_INTERVAL, self.sweep)

    def close(self) -> None:
        for timer in (self._sweeper, self._log_timer):
            if timer is not None:
                timer.cancel()
        self._sweeper = self._log_timer = None
        self.buckets.clear()

    def allow(self, address: Any, rate: float, burst: int) -> bool:
        """Take a token of ``address``'s bucket; False when it is empty (the client is over the rate).

        Called once per accepted socket, with ``rate`` > 0 (0 turns the limit off before this).
        """
        key = bucket_key(address)
        now = self.loop.now
        bucket = self.buckets.get(key)
        if bucket is None:
            if len(self.buckets) >= MAX_BUCKETS:
                del self.buckets[next(iter(self.buckets))]
            self.buckets[key] = [burst - 1.0, now]
            return True
        tokens = min(float(burst), bucket[0] + (now - bucket[1]) * rate)
        bucket[1] = now
        if tokens >= 1.0:
            bucket[0] = tokens - 1.0
            return True
        bucket[0] = tokens
        return False

    def sweep(self) -> None:
        """Drop the buckets that have refilled since they were last used (timer; O(table))."""
        if not self.buckets:
            return
        rate, burst = self.limits()
        if rate <= 0:
            self.buckets.clear()
            return
        now = self.loop.now
        full = [key for key, (tokens, at) in self.buckets.items() if tokens + (now - at) * rate >= burst]
        for key in full:
            del self.buckets[key]

    def refused(self, address: Any) -> None:
        """Count a refusal for the next summary line (one a second at most)."""
        host = str(address[0]) if isinstance(address, tuple) else str(address)
        counts = self._refused_since_log
        if host in counts or len(counts) < _LOGGED_ADDRESSES:
            counts[host] = counts.get(host, 0) + 1
        else:
            self._refused_unnamed += 1
        if self._log_timer is None:
            self._log_timer = self.loop.call_later(LOG_INTERVAL, self._log_refusals)

    def _log_refusals(self) -> None:
        self._log_timer = None
        counts, unnamed = self._refused_since_log, self._refused_unnamed
        self._refused_since_log, self._refused_unnamed = {}, 0
        total = sum(counts.values()) + unnamed
        if not total:
            return
        top = sorted(counts.items(), key=lambda kv: -kv[1])[:5]
        rest = total - sum(n for _, n in top)
        named = ", ".join(f"{host}: {n}" for host, n in top)
        log.warning(
            "connection rate limit: refused %d connection%s in the last %g s (%s%s)",
            total,
            "" if total == 1 else "s",
            LOG_INTERVAL,
            named,
            f"; {rest} from other addresses" if rest else "",
        )
