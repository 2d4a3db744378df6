"""What a connection does when its peer does not keep up: the write limit, keyed writes, the discard.

A mixin of :class:`wsdaemon.net.stream.StreamConnection` (whose state it works on): the bytes
queued behind the write in progress may not exceed ``settings.max_write_buffer`` (past it
``on_write_overflow`` runs, a slow consumer); a keyed write (conflation) stays replaceable while
it is unsent, in place in the cork list or, while backlogged, in a small ordered map key -> bytes
moved into the buffer once it drained; :meth:`WriteBacklog.discard_unsent` drops what waits and
keeps the write in progress, so a transport can still end the stream on a frame boundary.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Hashable
from itertools import islice
from typing import Any

log = logging.getLogger("wsdaemon.connection")

#: Largest plaintext given to one ``SSL_write``: after a partial TLS write the
#: first this-many buffered bytes must stay in place until the retry succeeds.
TLS_SEND_CHUNK = 64 * 1024


class WriteBacklog:
    """The backlog policy of a stream connection (no state of its own: the connection's slots)."""

    __slots__ = ()

    host: Any
    loop: Any
    transport_closed: bool
    _tls: bool
    _wbuf: bytearray | None
    _wlens: deque[int] | None
    _out: list | None
    _okeys: list | None
    _corked: bool
    _keyed: dict[Hashable, bytes] | None
    _keyed_bytes: int
    replaced: int
    buffered_amount: int
    _send_now: Any
    abort: Any

    def write_keyed(self, data: bytes, key: Hashable) -> None:
        """Queue ``data`` under ``key``: until it is unsent, a later keyed write with the same key
        replaces it in place, provided no unkeyed write came after it (which keeps the order).

        Backlogged, keyed writes count against ``max_write_buffer`` by their own
        total only (one per key), so a peer that stops reading keyed traffic is
        not a slow consumer.
        """
        if self.transport_closed or not data:
            return
        if self._wbuf:
            if self._out:  # corked earlier writes of this read go first, in order
                self._keyed_to_wbuf()
                out = self._out
                self._out = self._okeys = None
                self._wbuf += b"".join(out)
                self._wlens.extend(map(len, out))
            keyed = self._keyed
            if keyed is None:
                self._keyed = {key: data}
            else:
                old = keyed.get(key)
                if old is not None:
                    self.replaced += 1
                    self._keyed_bytes -= len(old)
                keyed[key] = data
            self._keyed_bytes += len(data)
            limit = self.host.settings.max_write_buffer
            if limit and self._keyed_bytes > limit:
                self.on_write_overflow()
            return
        if not self._corked:
            if not self.loop.running:
                self._send_now(data)
                return
            self._corked = True
            self._out = None
            self.loop.corked.append(self)
        out = self._out
        if out is None:
            out = self._out = []
        okeys = self._okeys
        if okeys is not None and okeys[0] == len(out):
            index = okeys[1].get(key)
            if index is not None:
                out[index] = data
                self.replaced += 1
                return
            okeys[1][key] = len(out)
            okeys[0] += 1
        else:  # first keyed write of this iteration, or an unkeyed one came after the last
            self._okeys = [len(out) + 1, {key: len(out)}]
        out.append(data)

    def _keyed_to_wbuf(self) -> None:
        """The held keyed writes become ordinary queued bytes (an unkeyed write follows them)."""
        keyed = self._keyed
        if keyed:
            self._keyed = None
            self._keyed_bytes = 0
            parts = list(keyed.values())
            self._wbuf += b"".join(parts)
            self._wlens.extend(map(len, parts))

    def _check_write_limit(self) -> None:
        """A slow consumer overflows here: too much queued behind the write being sent."""
        limit = self.host.settings.max_write_buffer
        if limit and len(self._wbuf) - self._wlens[0] > limit:
            self.on_write_overflow()

    def on_write_overflow(self) -> None:
        """The peer does not read fast enough; the default is to drop it."""
        log.warning(
            "%s: slow consumer, %d bytes waiting over the %d-byte limit; dropping it",
            self,
            self.buffered_amount,
            self.host.settings.max_write_buffer,
        )
        self.abort(None)

    def discard_slow_consumer_backlog(self) -> None:
        """Log a slow consumer and drop its queued writes; the write in progress is kept."""
        waiting = self.buffered_amount
        dropped = self.discard_unsent()
        log.warning(
            "%s: slow consumer, %d bytes waiting (limit %d); dropped %d, closing with 1008",
            self,
            waiting,
            self.host.settings.max_write_buffer,
            dropped,
        )

    def discard_unsent(self) -> int:
        """Drop queued writes, keeping the one in progress so the stream ends on a boundary.

        Over TLS the first ``TLS_SEND_CHUNK`` bytes stay too (an interrupted
        ``SSL_write`` must be retried with them). Returns the bytes dropped.
        """
        self._out = self._okeys = None
        held = self._keyed_bytes
        self._keyed = None
        self._keyed_bytes = 0
        wbuf = self._wbuf
        if not wbuf:
            return held
        keep_at_least = TLS_SEND_CHUNK if self._tls else 1
        keep = count = 0
        for length in self._wlens:
            keep += length
            count += 1
            if keep >= keep_at_least:
                break
        dropped = len(wbuf) - keep
        if dropped:
            self._wbuf = bytearray(memoryview(wbuf)[:keep])
            self._wlens = deque(islice(self._wlens, count))
        return dropped + held
