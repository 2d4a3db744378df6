"""Process-wide traffic counters and bucket counts, plain integers read at scrape time (``/metrics``).

The hot path adds to a list it already holds (one per connection class, found
when the class is made), once per ``recv``, ``send`` or batch of frames, never
per byte and never through a metrics library; ``wsdaemon.metrics`` turns the
numbers into Prometheus families when someone asks.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable

#: Index of each figure in a traffic list.
BYTES_IN, BYTES_OUT, FRAMES_IN, FRAMES_OUT = range(4)

#: transport label -> [bytes in, bytes out, frames in, frames out], for the whole process.
TRAFFIC: dict[str, list[int]] = {}


def traffic(label: str) -> list[int]:
    """The counters of ``label`` (created at zero the first time)."""
    counts = TRAFFIC.get(label)
    if counts is None:
        counts = TRAFFIC[label] = [0, 0, 0, 0]
    return counts


#: HTTP status -> error answers sent (refused handshakes and requests, the 503 at the limit).
REFUSED: dict[int, int] = {}


def count_refusal(status: int) -> None:
    REFUSED[status] = REFUSED.get(status, 0) + 1


#: Fairness: reads whose frames the read budget spread over later loop turns, and messages
#: dropped by the message rate limit (its closes are counted by close reason).
FAIRNESS: dict[str, int] = {"budget_deferred": 0, "rate_dropped": 0}


#: reason -> client sockets refused at accept, before a byte was read, whether they got a 503 or were
#: closed: ``limit`` (max_connections), ``rate`` (max_connects_per_second), ``metrics_limit`` (the
#: metrics listener's own cap).
REFUSED_AT_ACCEPT: dict[str, int] = {"limit": 0, "rate": 0, "metrics_limit": 0}


class Histogram:
    """Observations in buckets with upper bounds ``bounds`` (seconds), as plain ints.

    ``counts[i]`` holds the observations in ``(bounds[i-1], bounds[i]]``; above the
    last bound they are only in ``count`` (Prometheus' ``+Inf``).
    """

    __slots__ = ("bounds", "counts", "sum", "count")

    def __init__(self, bounds: Iterable[float]) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * len(self.bounds)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.sum += value
        self.count += 1
        i = bisect_left(self.bounds, value)
        if i < len(self.counts):
            self.counts[i] += 1

    def cumulative(self) -> list[tuple[float, int]]:
        """``(bound, observations <= bound)`` per bucket, then ``(inf, count)``."""
        out, total = [], 0
        for bound, n in zip(self.bounds, self.counts, strict=True):
            total += n
            out.append((bound, total))
        out.append((float("inf"), self.count))
        return out


#: How late timers fire: 100 µs to 2.5 s.
LAG_BOUNDS = (0.0001, 0.0005, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
#: How long worker tasks take: 1 ms to 60 s.
TASK_BOUNDS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
