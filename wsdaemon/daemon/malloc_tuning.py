"""Keep message-sized buffers in glibc's heap instead of fresh mmap'd pages; hand memory back later.

glibc serves allocations over 128 KiB with ``mmap`` and returns them with
``munmap``: every large message then pays a page fault per 4 KiB on first
touch. Raising the mmap and trim thresholds above the largest message lets
freed buffers be reused; measured here, 1 MiB echo goes from 0.83 to 2.3 GB/s.
The price is that freed memory stays with the process: :class:`MemoryTrim` hands it
back after a crowd of clients has left (docs/performance.md, Memory handed back).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging
import os
import sys
import time
from collections.abc import Callable
from typing import Any

from .renew import renew_numbers

log = logging.getLogger("wsdaemon.malloc")

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
#: glibc's own ceiling for the dynamic mmap threshold (DEFAULT_MMAP_THRESHOLD_MAX on 64-bit).
MMAP_THRESHOLD_MAX = 32 * 1024 * 1024


def keep_large_buffers_in_heap(largest_message: int) -> bool:
    """Tune glibc malloc for messages up to ``largest_message`` bytes; False where not glibc."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        log.debug("mallopt not available; malloc left as it is")
        return False
    mmap_threshold = min(max(largest_message * 2, 1024 * 1024), MMAP_THRESHOLD_MAX)
    ok = mallopt(_M_MMAP_THRESHOLD, mmap_threshold) and mallopt(_M_TRIM_THRESHOLD, 2 * mmap_threshold)
    if ok:
        log.debug("malloc: mmap threshold %d, trim threshold %d", mmap_threshold, 2 * mmap_threshold)
    return bool(ok)


#: How often the trimmer compares the connections held with their peak (one timer, no per-close hook).
CHECK_INTERVAL = 1.0
#: Fewest seconds between two trims: a trim is a full GC pass and a walk over glibc's heap.
MIN_TRIM_INTERVAL = 5.0
#: A peak below this is too small to leave memory worth handing back.
MIN_PEAK = 1000
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


def _libc_malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, looked up once; None where the C library has none (musl, macOS)."""
    try:
        trim = ctypes.CDLL(ctypes.util.find_library("c")).malloc_trim
    except (OSError, AttributeError, TypeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


def rss_bytes() -> int:
    """This process's resident set size, from ``/proc/self/statm`` (0 where there is none)."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * PAGE_SIZE
    except (OSError, ValueError, IndexError):
        return 0


class MemoryTrim:
    """Hand freed memory back to the system once the connections held have fallen well below their peak.

    The raised trim threshold (:func:`keep_large_buffers_in_heap`) makes glibc keep freed memory, and
    CPython's small-object allocator keeps arenas pinned by its free lists, so RSS never went down
    after a crowd of clients left. Rule, checked every ``CHECK_INTERVAL`` on two plain counts (the
    larger of open connections and admitted client sockets): trim when the count is at most half
    of its peak since the last trim, that peak was at least ``MIN_PEAK``, the count did not fall
    since the last check (the crowd has finished leaving: one trim, not one mid-way) and
    ``MIN_TRIM_INTERVAL`` has passed. A trim (at the next loop turn, the loop woken first) rebuilds
    the tables sized for the crowd, runs ``gc.collect()`` (a full pass empties the free lists that
    pin whole arenas), renews the long-lived numbers that the crowd's arenas held
    (:func:`~wsdaemon.daemon.renew.renew_numbers`), then ``malloc_trim(0)``. Steady traffic, large messages included, never halves the count, so it
    never trims; a few connections never reach ``MIN_PEAK``.
    """

    def __init__(
        self,
        server: Any,
        malloc_trim: Callable[[int], int] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.server = server
        self.clock = clock
        self.malloc_trim = malloc_trim if malloc_trim is not None else _libc_malloc_trim()
        self.peak = 0
        self.trims = 0
        #: RSS handed back by all trims (the drop over each, when it dropped).
        self.returned_bytes = 0
        self.last_trim: dict[str, Any] | None = None
        self._previous = 0
        self._last_trim_at = -MIN_TRIM_INTERVAL
        self._timer: Any = None
        self._due = False

    def held(self) -> int:
        """Connections and client sockets held now: what the crowd's memory was for."""
        server = self.server
        return max(len(server.connections), len(server.admission.clients))

    def start(self) -> None:
        if self._timer is None:
            self._timer = self.server.loop.call_every(CHECK_INTERVAL, self.check)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def check(self) -> None:
        """The timer's callback: trim if the rule of the class says so."""
        if not self.server.settings.memory_trim:
            self.peak = self._previous = 0
            return
        if self._due:
            return
        held = self.held()
        previous, self._previous = self._previous, held
        if held > self.peak:
            self.peak = held
        if (
            self.peak >= MIN_PEAK
            and held * 2 <= self.peak
            and held >= previous
            and self.clock() - self._last_trim_at >= MIN_TRIM_INTERVAL
        ):
            self._schedule(held)

    def _schedule(self, held: int) -> None:
        """Trim at the start of the next loop turn, not from this timer.

        There no timer's locals are alive, and the loop, woken by its pipe, has let go of the last
        handler it served (a connection long closed, with all it held)."""
        self._due = True
        loop = self.server.loop
        loop.wake()
        loop.call_soon(loop.call_soon, self.trim, held)

    def trim(self, held: int) -> None:
        """Collect garbage and free lists, renew long-lived numbers, hand free heap pages back; log, count."""
        self._due = False
        started = self.clock()
        before = rss_bytes()
        for table in self._tables():
            shrink(table)
        gc.collect()
        renewed = renew_numbers(self._roots())  # right after the collection emptied the free lists
        if self.malloc_trim is not None:
            self.malloc_trim(0)
        after = rss_bytes()
        self._last_trim_at = self.clock()
        elapsed = self._last_trim_at - started
        self.trims += 1
        self.returned_bytes += max(0, before - after)
        self.last_trim = {
            "peak": self.peak,
            "held": held,
            "rss_before": before,
            "rss_after": after,
            "seconds": round(elapsed, 4),
            "renewed": renewed,
        }
        log.info(
            "memory trim: %d held (peak %d): RSS %.1f -> %.1f MiB in %.0f ms",
            held,
            self.peak,
            before / 2**20,
            after / 2**20,
            elapsed * 1000,
        )
        self.peak = held

    def _roots(self) -> list[Any]:
        """Where the daemon's long-lived numbers are: the server and the modules of the package."""
        modules = [module for name, module in list(sys.modules.items()) if name.startswith("wsdaemon.")]
        return [self.server, *modules]

    def _tables(self) -> list[Any]:
        server = self.server
        return [server.connections, server.admission.clients, *server.loop.maps()]

    def stats(self) -> dict[str, Any]:
        """``/status``: trims so far, RSS handed back, the last trim."""
        return {
            "trims": self.trims,
            "returned_bytes": self.returned_bytes,
            "malloc_trim": self.malloc_trim is not None,
            "last": self.last_trim,
        }


def shrink(table: set | dict) -> None:
    """Rebuild ``table`` in place: sets and dicts keep the size of their largest day until cleared."""
    items = list(table.items()) if isinstance(table, dict) else list(table)
    table.clear()
    table.update(items)
