"""The one event loop: a ``selectors`` poll set, a heap of timers, and signals.

Every socket of the process is registered here with its handler object as
``key.data``: that is the socket-to-connection map. Handlers implement
``on_readable()`` and ``on_writable()``; nothing they do may block.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import math
import os
import select
import selectors
import signal
import time
from collections.abc import Callable
from typing import Any

from .counters import LAG_BOUNDS, Histogram

log = logging.getLogger("wsdaemon.loop")

EVENT_READ = selectors.EVENT_READ
EVENT_WRITE = selectors.EVENT_WRITE
#: epoll's bits for readable and writable (the fallback selector's events are given as these too).
_EPOLLIN = 0x001
_EPOLLOUT = 0x004


if hasattr(select, "epoll"):

    class LeanEpollSelector(selectors.EpollSelector):
        """``selectors``' epoll selector (same keys, same map) with its calls for a socket in one frame.

        Every connection is registered, handed over and unregistered once and every loop turn
        selects: the base class's helper calls are a good part of a short connection's cost. Anything
        unusual (an int, a closed or unknown socket, changed events) goes to the base class.
        """

        def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
            fd_to_key = self._fd_to_key
            try:
                fd = fileobj.fileno()
            except AttributeError:
                fd = -1
            if fd < 0 or fd in fd_to_key or not events or events & ~(EVENT_READ | EVENT_WRITE):
                return super().register(fileobj, events, data)
            key = fd_to_key[fd] = _new_key(_SelectorKey, (fileobj, fd, events, data))
            try:
                self._selector.register(fd, _POLL_EVENTS[events])
            except BaseException:
                del fd_to_key[fd]
                raise
            return key

        def modify(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
            try:
                key = self._fd_to_key[fileobj.fileno()]
            except (AttributeError, KeyError):
                return super().modify(fileobj, events, data)
            if events != key.events:
                return super().modify(fileobj, events, data)
            if data is not key.data:
                key = self._fd_to_key[key.fd] = _new_key(_SelectorKey, (key.fileobj, key.fd, events, data))
            return key

        def unregister(self, fileobj: Any) -> selectors.SelectorKey:
            try:
                fd = fileobj.fileno()
                key = self._fd_to_key.pop(fd)
            except (AttributeError, KeyError):
                return super().unregister(fileobj)
            try:
                self._selector.unregister(fd)
            except OSError:  # closed since it was registered
                pass
            return key

        def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
            if timeout is None:
                timeout = -1
            elif timeout <= 0:
                timeout = 0
            else:  # epoll_wait counts milliseconds: round up, to wait at least ``timeout``
                timeout = math.ceil(timeout * 1e3) * 1e-3
            fd_to_key = self._fd_to_key
            try:
                fd_event_list = self._selector.poll(timeout, len(fd_to_key) or 1)
            except InterruptedError:
                return []
            ready = []
            for fd, event in fd_event_list:
                key = fd_to_key.get(fd)
                if key:
                    events = (EVENT_WRITE if event & _NOT_EPOLLIN else 0) | (
                        EVENT_READ if event & _NOT_EPOLLOUT else 0
                    )
                    ready.append((key, events & key.events))
            return ready

    _POLL_EVENTS = (0, select.EPOLLIN, select.EPOLLOUT, select.EPOLLIN | select.EPOLLOUT)
    #: A SelectorKey made as its namedtuple ``__new__`` makes it, without that Python frame.
    _new_key = tuple.__new__
    _SelectorKey = selectors.SelectorKey
    _NOT_EPOLLIN = ~select.EPOLLIN
    _NOT_EPOLLOUT = ~select.EPOLLOUT
    DefaultSelector: type[selectors.BaseSelector] = LeanEpollSelector
else:  # pragma: no cover - not Linux
    DefaultSelector = selectors.DefaultSelector


class TimerHandle:
    """A scheduled call; ``cancel()`` it to drop it."""

    __slots__ = ("when", "seq", "callback", "args", "interval", "cancelled")

    def __init__(self, when: float, seq: int, callback: Callable, args: tuple, interval: float | None):
        self.when = when
        self.seq = seq
        self.callback = callback
        self.args = args
        self.interval = interval
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class _SignalReader:
    """Reads the wake-up fd that ``signal.set_wakeup_fd`` writes signal numbers to."""

    __slots__ = ("loop", "fd")

    def __init__(self, loop: EventLoop, fd: int) -> None:
        self.loop = loop
        self.fd = fd

    def on_readable(self) -> None:
        try:
            data = os.read(self.fd, 512)
        except (BlockingIOError, InterruptedError):
            return
        for signum in data:
            self.loop._dispatch_signal(signum)

    def on_writable(self) -> None:  # pragma: no cover - never registered for writing
        pass


class EventLoop:
    """A single-threaded ``selectors`` loop with timers and signal dispatch."""

    def __init__(self) -> None:
        self.selector = DefaultSelector()
        #: fd -> handler, beside the selector's own map: with epoll the loop polls the selector's
        #: epoll object itself and skips building a SelectorKey tuple per ready fd.
        self._dispatch: dict[int, Any] = {}
        self._epoll = getattr(self.selector, "_selector", None)
        if not isinstance(self._epoll, getattr(select, "epoll", ())):
            self._epoll = None
        #: (when, seq, handle): the heap compares floats and ints in C, never a handle.
        self._timers: list[tuple[float, int, TimerHandle]] = []
        self._seq = itertools.count()
        self._soon: list[tuple[Callable, tuple]] = []
        #: True while :meth:`run` runs (an attribute: every write outside a read checks it).
        self.running = False
        #: Connections with writes corked in this iteration; flushed before the next select, or
        #: earlier by a full batch of replies (``stream.REPLY_BATCH``).
        self.corked: list = []
        self._signal_handlers: dict[int, Callable[[], Any]] = {}
        self._wake_r: int | None = None
        self._wake_w: int | None = None
        self.now = time.monotonic()
        #: Loop iterations (one per select) and how late timers fire, for ``/metrics``.
        self.iterations = 0
        self.lag = Histogram(LAG_BOUNDS)

    # -- registration: the socket -> handler map is the selector itself ----------

    def register(self, sock: Any, events: int, handler: Any) -> None:
        key = self.selector.register(sock, events, handler)
        self._dispatch[key.fd] = handler

    def modify(self, sock: Any, events: int, handler: Any) -> None:
        key = self.selector.modify(sock, events, handler)
        self._dispatch[key.fd] = handler

    def unregister(self, sock: Any) -> None:
        try:
            key = self.selector.unregister(sock)
        except (KeyError, ValueError):
            return
        self._dispatch.pop(key.fd, None)

    def maps(self) -> list[dict]:
        """The fd-keyed dicts that grow with the number of sockets (a memory trim rebuilds them)."""
        maps: list[dict] = [self._dispatch]
        fd_to_key = getattr(self.selector, "_fd_to_key", None)  # selectors' own, behind get_map()
        if isinstance(fd_to_key, dict):
            maps.append(fd_to_key)
        return maps

    # -- timers ------------------------------------------------------------------

    def call_later(self, delay: float, callback: Callable, *args: Any) -> TimerHandle:
        when = time.monotonic() + delay
        seq = next(self._seq)
        handle = TimerHandle(when, seq, callback, args, None)
        heapq.heappush(self._timers, (when, seq, handle))
        return handle

    def call_every(self, interval: float, callback: Callable, *args: Any) -> TimerHandle:
        """Call ``callback`` every ``interval`` seconds until the handle is cancelled."""
        if interval <= 0:
            raise ValueError("interval must be positive")
        when = time.monotonic() + interval
        seq = next(self._seq)
        handle = TimerHandle(when, seq, callback, args, interval)
        heapq.heappush(self._timers, (when, seq, handle))
        return handle

    def call_soon(self, callback: Callable, *args: Any) -> None:
        """Run ``callback`` in the next loop iteration, after I/O dispatch."""
        self._soon.append((callback, args))

    # -- signals -----------------------------------------------------------------

    def add_signal_handler(self, signum: int, callback: Callable[[], Any]) -> None:
        """Run ``callback`` in the loop when ``signum`` arrives; the C handler only wakes us."""
        if not self._signal_handlers:
            signal.set_wakeup_fd(self._wake_pipe(), warn_on_full_buffer=False)
        self._signal_handlers[signum] = callback
        signal.signal(signum, _noop_signal_handler)

    def _wake_pipe(self) -> int:
        """The write end of the wake-up pipe (made on first use); its reader dispatches signals."""
        if self._wake_w is None:
            self._wake_r, self._wake_w = os.pipe()
            os.set_blocking(self._wake_r, False)
            os.set_blocking(self._wake_w, False)
            self.register(self._wake_r, EVENT_READ, _SignalReader(self, self._wake_r))
        return self._wake_w

    def wake(self) -> None:
        """Make the next ``select`` return at once with the wake-up pipe readable.

        Dispatching it rebinds the loop's locals, which otherwise keep the last handler served
        (a connection long closed, with all it holds) alive until the next I/O event.
        """
        try:
            os.write(self._wake_pipe(), b"\0")  # signal 0: no handler, ignored
        except (BlockingIOError, InterruptedError):
            pass  # the pipe is full: a wake-up is pending anyway

    def _dispatch_signal(self, signum: int) -> None:
        callback = self._signal_handlers.get(signum)
        if callback is not None:
            self._run_callback(callback, ())

    def remove_signal_handlers(self) -> None:
        for signum in self._signal_handlers:
            signal.signal(signum, signal.SIG_DFL)
        if self._signal_handlers:
            signal.set_wakeup_fd(-1)
        self._signal_handlers.clear()
        if self._wake_r is not None:
            self.unregister(self._wake_r)
            os.close(self._wake_r)
            os.close(self._wake_w)
            self._wake_r = self._wake_w = None

    # -- running -----------------------------------------------------------------

    def stop(self) -> None:
        self.running = False

    def run(self) -> None:
        """Dispatch I/O readiness and timers until :meth:`stop`."""
        self.running = True
        try:
            self._run()
        finally:
            self.running = False
            self.flush_corked()

    def _run(self) -> None:
        timers = self._timers
        dispatch = self._dispatch
        epoll = self._epoll
        while self.running:
            if self.corked:
                self.flush_corked()
            if self._soon:
                timeout = 0.0
            elif timers:
                timeout = max(0.0, timers[0][0] - time.monotonic())
            else:
                timeout = 1.0
            if epoll is not None:
                try:  # what EpollSelector.select does, without a SelectorKey per ready fd
                    ready = epoll.poll(math.ceil(timeout * 1e3) * 1e-3, max(len(dispatch), 1))
                except InterruptedError:  # pragma: no cover - PEP 475 retries
                    ready = ()
            else:
                ready = self._select(timeout)
            self.now = time.monotonic()
            self.iterations += 1
            for fd, event in ready:
                handler = dispatch.get(fd)
                if handler is None:
                    continue
                try:
                    # The kernel reports only the events asked for, errors and hang-ups aside.
                    if event == _EPOLLIN:
                        handler.on_readable()
                    elif event == _EPOLLOUT:
                        handler.on_writable()
                    else:
                        self._dispatch_other(fd, event, handler)
                except Exception:
                    log.exception("unhandled error in %r", handler)
                    _abort_handler(handler)
            if timers and timers[0][0] <= self.now:
                self._run_timers()
            if self._soon:
                soon, self._soon = self._soon, []
                for callback, args in soon:
                    self._run_callback(callback, args)

    def _dispatch_other(self, fd: int, event: int, handler: Any) -> None:
        """Both directions, an error or a hang-up: what ``selectors`` would report, by the key's events."""
        key = self.selector.get_map().get(fd)
        events = key.events if key is not None else 0
        if event & ~_EPOLLOUT and events & EVENT_READ:
            handler.on_readable()
        if event & ~_EPOLLIN and events & EVENT_WRITE:
            handler.on_writable()

    def _select(self, timeout: float) -> list[tuple[int, int]]:
        """Ready (fd, epoll-style bits) from a selector that is not epoll (the fallback)."""
        try:
            ready = self.selector.select(timeout)
        except InterruptedError:  # pragma: no cover - PEP 475 retries
            return []
        bits = {
            0: 0,
            EVENT_READ: _EPOLLIN,
            EVENT_WRITE: _EPOLLOUT,
            EVENT_READ | EVENT_WRITE: _EPOLLIN | _EPOLLOUT,
        }
        return [(key.fd, bits[mask]) for key, mask in ready]

    def flush_corked(self) -> None:
        """Send what connections corked this turn; a flush that closes one may cork others."""
        while self.corked:
            corked, self.corked = self.corked, []
            for conn in corked:
                try:
                    conn.uncork()
                except Exception:
                    log.exception("unhandled error flushing %r", conn)
                    _abort_handler(conn)

    def _run_timers(self) -> None:
        timers = self._timers
        now = time.monotonic()
        while timers and timers[0][0] <= now:
            handle = heapq.heappop(timers)[2]
            if handle.cancelled:
                continue
            self.lag.observe(now - handle.when)
            if handle.interval is not None:
                handle.when = max(handle.when + handle.interval, now)
                heapq.heappush(timers, (handle.when, handle.seq, handle))
            self._run_callback(handle.callback, handle.args)

    @staticmethod
    def _run_callback(callback: Callable, args: tuple) -> None:
        try:
            callback(*args)
        except Exception:
            log.exception("error in timer or callback %r", callback)

    def close(self) -> None:
        self.remove_signal_handlers()
        self.selector.close()


def _noop_signal_handler(signum: int, frame: Any) -> None:
    """Python-level handler: the wake-up fd already carries the signal number."""


def _abort_handler(handler: Any) -> None:
    abort = getattr(handler, "abort", None)
    if abort is not None:
        try:
            abort()
        except Exception:  # pragma: no cover - last resort
            log.exception("error while aborting %r", handler)
