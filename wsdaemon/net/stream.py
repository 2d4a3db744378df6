"""Socket I/O shared by every connection: non-blocking reads, writes that never lose data.

A :class:`StreamConnection` owns one socket registered in the loop. Reads call
``data_received``; while a read is handled, writes are *corked* and joined into
one ``send`` at the end. What the kernel does not take is kept in an outbound
buffer flushed on ``EVENT_WRITE``, which is requested only while it is non-empty.

The outbound buffer is bounded, and a keyed write stays replaceable while it
is unsent: what happens when the peer does not keep up is
:class:`wsdaemon.net.write_backlog.WriteBacklog`, a mixin of this class.

The socket may be a non-blocking :class:`ssl.SSLSocket` whose handshake is done
(see :mod:`wsdaemon.net.tls`): reads drain the records OpenSSL already decrypted,
sends go in chunks so a retried ``SSL_write`` always sees the same first bytes,
and closing sends TLS close_notify before the TCP half-close.

A connection can hand its socket to another handler (:meth:`StreamConnection.hand_over`,
the swap of an HTTP connection into a WebSocket): the whole state moves, so a
pipelined answer still unsent leaves before anything the new handler writes.
What a connection needs of its owner is :class:`StreamHost`.
"""

from __future__ import annotations

import logging
import socket
import ssl
from collections import deque
from collections.abc import Hashable
from typing import Any, Protocol

from ..settings import Settings
from .counters import traffic
from .loop import EVENT_READ, EVENT_WRITE, EventLoop
from .sockets import format_address
from .write_backlog import TLS_SEND_CHUNK, WriteBacklog

log = logging.getLogger("wsdaemon.connection")

RECV_SIZE = 256 * 1024
#: A corked write at least this large is sent with the ones before it by ``sendmsg``, not joined.
GATHER_MIN = 64 * 1024
#: At most this many corked writes go to one ``sendmsg`` (well under any IOV_MAX).
GATHER_MAX_PARTS = 64
#: Replies made while reading wait for the end of the loop turn, or until this many connections
#: have some: sends back to back find the peer still awake (a wakeup per send costs more than the
#: send), and the wait stays short.
REPLY_BATCH = 64
_DRAIN_TIMEOUT = 2.0
#: Bytes read and discarded after our half-close before the connection is dropped without its EOF.
DRAIN_READ_LIMIT = 64 * 1024


class StreamHost(Protocol):
    """What a stream connection needs of whoever owns it: the server, or a test."""

    loop: EventLoop
    #: Read live: a reload replaces it (``max_write_buffer`` is read on every queued write).
    settings: Settings

    def watch(self, conn: StreamConnection) -> None:
        """Call ``conn.on_deadline(now)`` once, when ``conn.deadline`` has passed."""

    def unwatch(self, conn: StreamConnection) -> None:
        """Forget ``conn``'s deadline."""

    def client_closed(self, fileno: int) -> None:
        """The socket with descriptor ``fileno`` is being closed."""


class StreamConnection(WriteBacklog):
    """One registered socket with an inbound path and a bounded outbound buffer."""

    #: The transport label of this class's traffic counters (subclasses name theirs).
    protocol = "http"
    #: [bytes in, bytes out, frames in, frames out] of every connection of this class's protocol.
    _traffic = traffic("http")

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._traffic = traffic(cls.protocol)

    __slots__ = (
        "host",
        "loop",
        "sock",
        "remote_address",
        "_wbuf",
        "_wlens",
        "_out",
        "_corked",
        "_feeding",
        "_write_registered",
        "_close_after_flush",
        "_draining",
        "_drain_left",
        "peer_finished",
        "_paused",
        "_read_stopped",
        "transport_closed",
        "handed_over",
        "deadline",
        "last_seen",
        "_tls",
        "_keyed",
        "_keyed_bytes",
        "_okeys",
        "replaced",
        "dropped",
    )

    def __init__(self, host: StreamHost, sock: socket.socket, remote_address: Any) -> None:
        self.host = host
        self.loop = host.loop
        self.sock = sock
        self.remote_address = remote_address
        self._wbuf: bytearray | None = None
        #: Lengths of the writes in ``_wbuf``, oldest (the one being sent) first.
        self._wlens: deque[int] | None = None
        self._out: list | None = None
        self._corked = False
        #: True while ``data_received`` runs from :meth:`feed`.
        self._feeding = False
        self._write_registered = False
        self._close_after_flush = False
        self._draining = False
        self._drain_left = DRAIN_READ_LIMIT
        #: Set by a transport once the peer ended its side and everything it sent was read (an RFC 6455
        #: close frame with nothing after it): the close then needs no half-close and drain.
        self.peer_finished = False
        #: What stands in for this connection in the selector while reading is paused (see pause_reading).
        self._paused: _ReadingPaused | None = None
        self._read_stopped = False
        #: True once this object is done with the socket: closed it, or handed it over.
        self.transport_closed = False
        #: True once :meth:`hand_over` gave the socket to another handler.
        self.handed_over = False
        #: Monotonic time after which :meth:`on_deadline` runs (handshake, close, drain).
        self.deadline = 0.0
        self.last_seen = self.loop.now
        self._tls = isinstance(sock, ssl.SSLSocket)
        #: Keyed writes held while backlogged: key -> bytes, oldest key first (see write_keyed).
        self._keyed: dict[Hashable, bytes] | None = None
        self._keyed_bytes = 0
        #: While corked: [len(_out) after the last keyed write, {key: index in _out}].
        self._okeys: list | None = None
        #: Keyed writes replaced by a newer one with the same key before they were sent.
        self.replaced = 0
        #: Volatile messages dropped because the connection was backlogged (counted by the transports).
        self.dropped = 0

    # -- hooks for subclasses ----------------------------------------------------

    def data_received(self, data: bytes) -> None:
        raise NotImplementedError

    def eof_received(self) -> None:
        self.close_transport()

    def connection_lost(self, exc: BaseException | None) -> None:
        """Called once when the socket is gone, cleanly or not."""

    def on_deadline(self, now: float) -> None:
        """Called by the host's deadline service when ``deadline`` has passed."""
        self.close_transport()

    def close_if_idle(self) -> None:
        """At shutdown: close now if nothing is in progress (a keep-alive HTTP connection)."""

    def take_unread(self) -> bytes:
        """Remove and return the bytes received but not consumed yet (what a swap hands on)."""
        return b""

    # -- inbound -----------------------------------------------------------------

    def on_readable(self) -> None:
        try:
            data = self.sock.recv(RECV_SIZE)
        except (BlockingIOError, InterruptedError, ssl.SSLWantReadError):
            return
        except ssl.SSLWantWriteError:
            self._want_write()
            return
        except OSError as exc:
            self.abort(exc)
            return
        if not data:
            if self._draining:
                self.close_transport()
            else:
                self.eof_received()
            return
        if self._tls and self.sock.pending():
            data = self._recv_pending(data)
        if self._draining:
            # Waiting for the peer's EOF: a peer that keeps sending instead is dropped.
            self._drain_left -= len(data)
            if self._drain_left < 0:
                self.close_transport()
            return
        self.last_seen = self.loop.now
        self._traffic[0] += len(data)
        # feed(data), inline, except that the replies wait for the end of the loop turn
        self._corked = self._feeding = True
        try:
            self.data_received(data)
        finally:
            self._feeding = False
            if self._out:
                corked = self.loop.corked
                corked.append(self)
                if len(corked) >= REPLY_BATCH:
                    self.loop.flush_corked()
            else:
                self._corked = False

    def feed(self, data: bytes) -> None:
        """Handle ``data`` with writes corked: every reply it produces leaves in one ``send``."""
        self._corked = self._feeding = True
        try:
            self.data_received(data)
        finally:
            self._corked = self._feeding = False
            if self._out:
                self._uncork()

    def _recv_pending(self, data: bytes) -> bytes:
        """Add what OpenSSL decrypted already: the kernel will not report it readable."""
        parts = [data]
        try:
            while self.sock.pending():
                parts.append(self.sock.recv(RECV_SIZE))
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
            pass
        except OSError:
            pass  # reported by the next read
        return b"".join(parts)

    # -- outbound ----------------------------------------------------------------

    @property
    def buffered_amount(self) -> int:
        """Bytes accepted by ``write`` and not yet taken by the kernel."""
        pending = len(self._wbuf) if self._wbuf else 0
        if self._out:
            pending += sum(map(len, self._out))
        return pending + self._keyed_bytes

    def write(self, data: bytes) -> None:
        """Queue ``data``; it leaves in this loop iteration, what the kernel refuses on ``EVENT_WRITE``.

        Writes made while a read is handled, or anywhere in one loop iteration, are
        joined and sent once at its end (before the loop waits again). Outside a
        running loop the socket is tried at once.
        """
        if self.transport_closed or not data:
            return
        if self._corked:
            if self._out is None:
                self._out = [data]
            else:
                self._out.append(data)
            return
        if self._wbuf:
            self._queue(data)
            return
        loop = self.loop
        if loop.running:
            # Cork until the loop has run everything ready in this iteration: a
            # client receiving several broadcasts then gets them in one send.
            self._corked = True
            self._out = [data]
            loop.corked.append(self)
            return
        self._send_now(data)

    def uncork(self) -> None:
        """Send what was corked (the loop calls this once per iteration)."""
        if self._corked:
            self._corked = False
            out = self._out
            if out:
                if len(out) == 1 and not self._wbuf and not self._tls:
                    # _uncork's commonest case (one reply, nothing backlogged), inline: the loop
                    # calls this for every connection that answered in the turn
                    self._out = self._okeys = None
                    data = out[0]
                    traffic = self._traffic
                    traffic[3] += 1
                    try:
                        sent = self.sock.send(data)
                    except (BlockingIOError, InterruptedError):
                        sent = 0
                    except OSError as exc:
                        self.abort(exc)
                        return
                    traffic[1] += sent
                    if sent < len(data) or self._close_after_flush:
                        self._sent(data, sent, None)
                    return
                self._uncork()

    def _uncork(self) -> None:
        out = self._out
        self._out = self._okeys = None
        self._traffic[3] += len(out)
        if len(out) == 1:
            if self._wbuf:
                self._queue(out[0])
            else:
                self._send_now(out[0])
            return
        if self._wbuf:
            if self._keyed:
                self._keyed_to_wbuf()
            self._wbuf += b"".join(out)
            self._wlens.extend(map(len, out))
            self._check_write_limit()
        elif len(out[-1]) >= GATHER_MIN and len(out) <= GATHER_MAX_PARTS and not self._tls:
            self._send_gathered(out)
        else:
            self._send_now(b"".join(out), out)

    def _send_gathered(self, out: list) -> None:
        """Send corked writes that end with a large one in one ``sendmsg``, without joining them."""
        try:
            sent = self.sock.sendmsg(out)
            self._traffic[1] += sent
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError as exc:
            self.abort(exc)
            return
        if sent < sum(map(len, out)):
            rest = bytearray()
            skip = sent
            for part in out:  # only what the kernel refused is copied
                if skip >= len(part):
                    skip -= len(part)
                    continue
                rest += memoryview(part)[skip:]
                skip = 0
            self._wbuf = rest
            self._wlens = wlens = deque(map(len, out))
            _consume(wlens, sent)
            self._want_write()
            self._check_write_limit()
        elif self._close_after_flush:
            self._finish_close()

    def _queue(self, data: bytes) -> None:
        """Append behind the write in progress (and behind held keyed writes)."""
        if self._keyed:
            self._keyed_to_wbuf()
        self._wbuf += data
        self._wlens.append(len(data))
        self._check_write_limit()

    def _send(self, data: Any) -> int:
        """One non-blocking send; TLS in chunks, retried from the same first byte."""
        if not self._tls:
            sent = self.sock.send(data)
            self._traffic[1] += sent
            return sent
        sent = 0
        view = memoryview(data)
        n = len(view)
        while sent < n:
            try:
                sent += self.sock.send(view[sent : sent + TLS_SEND_CHUNK])
            except (ssl.SSLWantWriteError, ssl.SSLWantReadError):
                if not sent:
                    raise
                break
        self._traffic[1] += sent
        return sent

    def _send_now(self, data: bytes, parts: list | None = None) -> None:
        """Send ``data`` (the join of ``parts``, when several writes were corked) or buffer the rest."""
        try:
            if self._tls:
                sent = self._send(data)
            else:  # _send's plain case, inline
                sent = self.sock.send(data)
                self._traffic[1] += sent
        except (BlockingIOError, InterruptedError, ssl.SSLWantWriteError, ssl.SSLWantReadError):
            sent = 0
        except OSError as exc:
            self.abort(exc)
            return
        if sent < len(data) or self._close_after_flush:
            self._sent(data, sent, parts)

    def _sent(self, data: bytes, sent: int, parts: list | None) -> None:
        """After a send of ``data`` took ``sent`` bytes: buffer the rest, or close once all is out."""
        if sent < len(data):
            self._wbuf = bytearray(memoryview(data)[sent:])
            if parts is None:
                self._wlens = deque((len(self._wbuf),))
            else:
                self._wlens = wlens = deque(map(len, parts))
                _consume(wlens, sent)
            self._want_write()
            if parts is not None:
                self._check_write_limit()
        elif self._close_after_flush:
            self._finish_close()

    def _want_write(self) -> None:
        if not self._write_registered and not self.transport_closed:
            self._write_registered = True
            if self._read_stopped:
                self.loop.register(self.sock, EVENT_WRITE, self)
            else:
                self.loop.modify(self.sock, EVENT_READ | EVENT_WRITE, self._paused or self)

    def pause_reading(self) -> None:
        """Leave the socket unread until :meth:`resume_reading`: its owner has input to finish first.

        The selector keeps the socket with a stand-in that ignores read readiness, so the
        read path itself checks nothing (changing a key's handler costs no system call).
        """
        if self._paused is None and not self._read_stopped and not self.transport_closed:
            self._paused = _ReadingPaused(self)
            self.loop.modify(self.sock, self._read_interest(), self._paused)

    def resume_reading(self) -> None:
        if self._paused is not None:
            self._paused = None
            if not self._read_stopped and not self.transport_closed:
                self.loop.modify(self.sock, self._read_interest(), self)

    def _read_interest(self) -> int:
        """The selector events of a socket that is read: EVENT_READ, and EVENT_WRITE while backlogged."""
        return EVENT_READ | EVENT_WRITE if self._write_registered else EVENT_READ

    def stop_reading(self) -> None:
        """Never read this socket again (a peer given up on): the loop stops reporting it readable."""
        if self._read_stopped or self.transport_closed:
            return
        self._read_stopped = True
        self._paused = None
        if self._write_registered:
            self.loop.modify(self.sock, EVENT_WRITE, self)
        else:
            self.loop.unregister(self.sock)

    def on_writable(self) -> None:
        wbuf = self._wbuf
        if self.transport_closed:
            return
        if wbuf:
            try:
                sent = self._send(wbuf)
            except (BlockingIOError, InterruptedError, ssl.SSLWantWriteError, ssl.SSLWantReadError):
                return
            except OSError as exc:
                self.abort(exc)
                return
            del wbuf[:sent]
            if wbuf:
                _consume(self._wlens, sent)
                return
        self._wbuf = None
        self._wlens = None
        if self._keyed:  # drained: the held keyed writes leave now, still in key order
            parts = list(self._keyed.values())
            self._keyed = None
            self._keyed_bytes = 0
            self._send_now(b"".join(parts), parts)
            if self._wbuf or self.transport_closed:
                return
        if self._write_registered:
            self._write_registered = False
            if self._read_stopped:
                self.loop.unregister(self.sock)
            else:
                self.loop.modify(self.sock, EVENT_READ, self._paused or self)
        if self._close_after_flush:
            self._finish_close()
        else:
            self.on_drained()

    def on_drained(self) -> None:
        """Everything the kernel had refused has left: an owner that held messages back may send them."""

    # -- closing -----------------------------------------------------------------

    def close_after_flush(self) -> None:
        """Half-close once everything written has left, then wait briefly for the peer's EOF
        (or close at once, when ``peer_finished`` says none of its bytes can be left unread)."""
        self._close_after_flush = True
        if not self._wbuf and not self._out:
            self._finish_close()

    def _finish_close(self) -> None:
        # Shut down our side and drain the peer's until EOF: closing a socket with
        # unread input sends RST, which can destroy the last bytes we sent.
        if self._draining or self.transport_closed:
            return
        if self.peer_finished and not self._tls:
            # Nothing unread and nothing more to come: close() sends FIN after our last bytes.
            self.close_transport()
            return
        self._draining = True
        if self._tls:
            try:  # sends close_notify; the peer's own arrives while we drain
                self.sock.unwrap()
            except (OSError, ValueError):
                pass
        try:
            socket.socket.shutdown(self.sock, socket.SHUT_WR)
        except OSError:
            self.close_transport()
            return
        self.deadline = self.loop.now + _DRAIN_TIMEOUT
        self.host.watch(self)

    def close_transport(self) -> None:
        """Unregister and close the socket now; runs ``connection_lost`` once."""
        if self.transport_closed:
            return
        self.transport_closed = True
        self.loop.unregister(self.sock)
        self.host.client_closed(self.sock.fileno())
        try:
            self.sock.close()
        except OSError:  # pragma: no cover
            pass
        self._wbuf = None
        self._wlens = None
        self._out = self._okeys = self._keyed = None
        self._keyed_bytes = 0
        self.host.unwatch(self)
        self.connection_lost(None)

    def abort(self, exc: BaseException | None = None) -> None:
        """Drop the connection at once (reset, broken pipe, overflow, internal error)."""
        if exc is not None and not isinstance(exc, (ConnectionError, TimeoutError)):
            log.debug("%s: aborting after %r", self, exc)
        self.close_transport()

    # -- the swap ----------------------------------------------------------------

    def hand_over(self, successor: StreamConnection) -> bytes:
        """Make ``successor`` serve this socket from now on; returns the unread inbound bytes.

        Everything in flight moves with the socket: the unsent bytes with their
        write boundaries, the corked writes (and the loop's entry for them), the
        write interest and ``last_seen``; the selector map then points at
        ``successor``. Its writes queue behind what this connection wrote. This
        object is done with the socket after: it neither writes nor closes it.
        """
        if successor.sock is not self.sock:
            raise ValueError("the successor must be built on the same socket")
        if self.transport_closed or self._close_after_flush:
            raise RuntimeError(f"{self} is closing; it cannot hand its socket over")
        if successor._wbuf or successor._out:
            raise RuntimeError(f"{successor} wrote before it had the socket")
        loop = self.loop
        unread = self.take_unread()
        out, corked, write_registered = self._out, self._corked, self._write_registered
        successor._wbuf, successor._wlens = self._wbuf, self._wlens
        successor._write_registered = write_registered
        successor.last_seen = self.last_seen
        self._wbuf = self._wlens = self._out = None
        self._corked = self._write_registered = False
        self.handed_over = self.transport_closed = True
        self.host.unwatch(self)
        events = (EVENT_READ | EVENT_WRITE) if write_registered else EVENT_READ
        loop.modify(self.sock, events, successor)
        if corked and out:
            successor._out = out
            if loop.running:
                successor._corked = True
                try:
                    loop.corked[loop.corked.index(self)] = successor
                except ValueError:  # corked by a read in progress, not by the loop
                    loop.corked.append(successor)
            else:
                successor._uncork()
        return unread

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {format_address(self.remote_address)}>"


class _ReadingPaused:
    """A paused connection's entry in the selector: read readiness is ignored, writes go on."""

    __slots__ = ("conn",)

    def __init__(self, conn: StreamConnection) -> None:
        self.conn = conn

    def on_readable(self) -> None:
        pass

    def on_writable(self) -> None:
        self.conn.on_writable()

    def abort(self, exc: BaseException | None = None) -> None:
        self.conn.abort(exc)


def _consume(wlens: deque, sent: int) -> None:
    """Account ``sent`` bytes against the write lengths, oldest first."""
    while sent:
        if wlens[0] <= sent:
            sent -= wlens.popleft()
        else:
            wlens[0] -= sent
            sent = 0
