"""One non-blocking connection to Redis, in the daemon's loop like every other socket.

A :class:`RedisLink` connects (TCP, TLS or a Unix socket), says AUTH and SELECT,
then carries pipelined commands: each ``command()`` is encoded at once, queued,
and the queue leaves in one ``send`` at the end of the loop iteration (the loop's
cork list). Replies are parsed by :class:`~wsdaemon.proto.resp.ReplyParser` and
handed to each command's callback in order, or, on a subscriber link, every reply
goes to ``on_push``.

Nothing here waits: the connect, the TLS handshake and every read and write are
driven by readiness events. What is queued is bounded (``max_buffer`` bytes: a
command past it is refused, the caller counts it). A link that fails — refused,
reset, EOF, a connect or reply timeout (a stopped Redis answers nothing, so an
idle link pings it) — closes its socket, tells the owner and tries again after a
back-off doubling from 50 ms to 1 s with jitter, for ever, logging each change of
state once. Commands queued but unsent wait for the next connection
(``keep_queue``); the callbacks of commands already sent get :data:`LINK_LOST`.
"""

from __future__ import annotations

import enum
import logging
import os
import random
import socket
import ssl
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from ..proto.redis_url import RedisAddress
from ..proto.resp import ProtocolError, ReplyError, ReplyParser, encode_command
from .loop import EventLoop, TimerHandle

log = logging.getLogger("wsdaemon.broker")

EVENT_READ, EVENT_WRITE = 1, 2
RECV_SIZE = 256 * 1024
TLS_CHUNK = 16 * 1024
BACKOFF_FIRST = 0.05
BACKOFF_MAX = 1.0
PING_IDLE = 1.0


class LinkLost(Exception):
    """The connection went away before this command's reply came."""


#: What a sent command's callback gets when the link is lost before its reply.
LINK_LOST = LinkLost("the connection to Redis was lost")

Reply = Any
ReplyCallback = Callable[[Reply], None]


class LinkState(enum.Enum):
    DISCONNECTED = "disconnected"
    CONNECTING = "connecting"
    TLS_HANDSHAKE = "tls handshake"
    AUTHENTICATING = "authenticating"
    READY = "ready"
    CLOSED = "closed"


class RedisLink:
    """A connection to ``address`` that keeps itself up; ``command()`` pipelines, ``close()`` ends it."""

    def __init__(
        self,
        loop: EventLoop,
        address: RedisAddress,
        *,
        name: str,
        max_buffer: int,
        on_ready: Callable[[], None],
        on_lost: Callable[[], None] | None = None,
        on_push: Callable[[Reply], None] | None = None,
        keep_queue: bool = True,
        connect_timeout: float = 2.0,
        reply_timeout: float = 3.0,
        max_reply: int = 256 * 1024 * 1024,
        resolved: list | None = None,
    ) -> None:
        self.loop = loop
        self.address = address
        self.name = name
        self.max_buffer = max_buffer
        self._on_ready = on_ready
        self._on_lost = on_lost
        self._on_push = on_push
        self._keep_queue = keep_queue
        self._connect_timeout = connect_timeout
        self._reply_timeout = reply_timeout
        self._max_reply = max_reply
        self._resolved = resolved if resolved is not None else resolve(address)
        self.state = LinkState.DISCONNECTED
        self.sock: socket.socket | None = None
        self._parser = ReplyParser()
        #: Commands not yet written to the socket, with their callbacks; bytes counted.
        self._queue: deque[tuple[bytes, ReplyCallback | None]] = deque()
        self._queued_bytes = 0
        #: Bytes written to the socket's send path but not yet taken by the kernel.
        self._wbuf = bytearray()
        #: Callbacks of the commands sent, in order: the next reply is the first one's.
        self._inflight: deque[ReplyCallback | None] = deque()
        self._corked = False
        self._events = 0
        self._handshake_left = 0
        self._attempts = 0
        self._down_since: float | None = None
        self._last_error = ""
        self._last_recv = 0.0
        self._ping_sent: float | None = None
        self._connect_timer: TimerHandle | None = None
        self._retry_timer: TimerHandle | None = None
        self._health_timer: TimerHandle | None = None
        #: Times this link was lost after being ready, and connections made.
        self.losses = 0
        self.connects = 0

    # -- the caller's side -------------------------------------------------------

    @property
    def ready(self) -> bool:
        return self.state is LinkState.READY

    def start(self) -> None:
        self._health_timer = self.loop.call_every(PING_IDLE, self._check_health)
        self._connect()

    def command(self, *args: bytes | str | int | float, callback: ReplyCallback | None = None) -> bool:
        """Queue one command; False (and nothing queued) when the buffer is full or the link closed."""
        return self.send_encoded(encode_command(*args), callback)

    def send_encoded(self, data: bytes, callback: ReplyCallback | None = None) -> bool:
        """Queue one command already encoded (``encode_command``); see :meth:`command`."""
        if (
            self.state is LinkState.CLOSED
            or self._queued_bytes + len(self._wbuf) + len(data) > self.max_buffer
        ):
            return False
        self._queue.append((data, callback))
        self._queued_bytes += len(data)
        if self.state is LinkState.READY and not self._corked:
            self._corked = True
            self.loop.corked.append(self)
        return True

    @property
    def buffered(self) -> int:
        """Bytes queued or unsent."""
        return self._queued_bytes + len(self._wbuf)

    def close(self, flush_timeout: float = 0.0) -> None:
        """End the link for good; with ``flush_timeout``, first send what is queued, waiting that long at most."""
        if self.state is LinkState.CLOSED:
            return
        if flush_timeout > 0 and self.state is LinkState.READY and self.sock is not None:
            self._flush_blocking(flush_timeout)
        for timer in (self._connect_timer, self._retry_timer, self._health_timer):
            if timer is not None:
                timer.cancel()
        self._drop_socket()
        self._fail_inflight()
        self._queue.clear()
        self._queued_bytes = 0
        self.state = LinkState.CLOSED

    # -- connecting ----------------------------------------------------------------

    def _connect(self) -> None:
        self._retry_timer = None
        if self.state is LinkState.CLOSED:
            return
        self._attempts += 1
        family, address = self._resolved[(self._attempts - 1) % len(self._resolved)]
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setblocking(False)
        if family != socket.AF_UNIX:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        self.sock = sock
        self.state = LinkState.CONNECTING
        self._parser = ReplyParser()
        err = sock.connect_ex(address)
        if err not in (0, 115, 11):  # 0, EINPROGRESS, EAGAIN (a Unix socket's full backlog)
            self._fail(f"connect: {_strerror(err)}")
            return
        self._events = EVENT_WRITE
        self.loop.register(sock, EVENT_WRITE, self)
        self._connect_timer = self.loop.call_later(self._connect_timeout, self._connect_timed_out)

    def _connect_timed_out(self) -> None:
        self._connect_timer = None
        if self.state is not LinkState.READY and self.state is not LinkState.CLOSED:
            self._fail(f"no answer within {self._connect_timeout:g} s")

    def _connected(self) -> None:
        assert self.sock is not None
        err = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            self._fail(f"connect: {_strerror(err)}")
            return
        if self.address.tls:
            context = ssl.create_default_context(cafile=self.address.ca_file or None)
            self.loop.unregister(self.sock)
            self.sock = context.wrap_socket(
                self.sock, server_hostname=self.address.host, do_handshake_on_connect=False
            )
            self._events = 0
            self.state = LinkState.TLS_HANDSHAKE
            self._tls_handshake()
        else:
            self._authenticate()

    def _tls_handshake(self) -> None:
        assert isinstance(self.sock, ssl.SSLSocket)
        try:
            self.sock.do_handshake()
        except ssl.SSLWantReadError:
            self._set_events(EVENT_READ)
            return
        except ssl.SSLWantWriteError:
            self._set_events(EVENT_WRITE)
            return
        except (ssl.SSLError, OSError) as exc:
            self._fail(f"TLS: {exc}")
            return
        self._authenticate()

    def _authenticate(self) -> None:
        self.state = LinkState.AUTHENTICATING
        hello = []
        if self.address.password:
            auth = ("AUTH", self.address.username, self.address.password) if self.address.username else None
            hello.append(encode_command(*(auth or ("AUTH", self.address.password))))
        if self.address.db:
            hello.append(encode_command("SELECT", self.address.db))
        hello.append(encode_command("PING"))  # the one reply that says the handshake is over
        self._handshake_left = len(hello)
        self._wbuf += b"".join(hello)
        self._last_recv = self.loop.now
        self._write()

    def _handshake_reply(self, reply: Reply) -> None:
        if isinstance(reply, ReplyError):
            self._fail(f"Redis refused the handshake: {reply}", quiet_retry=False)
            return
        self._handshake_left -= 1
        if self._handshake_left:
            return
        if self._connect_timer is not None:
            self._connect_timer.cancel()
            self._connect_timer = None
        if self._down_since is not None:
            log.info(
                "Redis %s link to %s up again after %.1f s (%d attempts)",
                self.name,
                self.address,
                time.monotonic() - self._down_since,
                self._attempts,
            )
        else:
            log.info("Redis %s link connected to %s", self.name, self.address)
        self.state = LinkState.READY
        self.connects += 1
        self._attempts = 0
        self._down_since = None
        self._last_error = ""
        self._set_events(EVENT_READ)
        try:
            self._on_ready()
        except Exception:
            log.exception("error in the %s link's on_ready", self.name)
        if self._queue and not self._corked:
            self._corked = True
            self.loop.corked.append(self)

    # -- loss and retry ------------------------------------------------------------

    def _fail(self, reason: str, quiet_retry: bool = True) -> None:
        was_ready = self.state is LinkState.READY
        self._drop_socket()
        self._fail_inflight()
        if not self._keep_queue:
            self._queue.clear()
            self._queued_bytes = 0
        if self.state is LinkState.CLOSED:
            return
        self.state = LinkState.DISCONNECTED
        if was_ready:
            self.losses += 1
            self._down_since = time.monotonic()
            log.warning("Redis %s link to %s lost: %s; reconnecting", self.name, self.address, reason)
        elif self._down_since is None:
            self._down_since = time.monotonic()
            log.warning("cannot reach Redis at %s (%s link): %s; retrying", self.address, self.name, reason)
        elif reason != self._last_error or not quiet_retry:
            log.warning("Redis %s link to %s: %s; retrying", self.name, self.address, reason)
        self._last_error = reason
        delay = min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** min(self._attempts, 10)) * random.uniform(0.5, 1.0)
        self._retry_timer = self.loop.call_later(delay, self._connect)
        if was_ready and self._on_lost is not None:
            try:
                self._on_lost()
            except Exception:
                log.exception("error in the %s link's on_lost", self.name)

    def _drop_socket(self) -> None:
        if self._connect_timer is not None:
            self._connect_timer.cancel()
            self._connect_timer = None
        if self.sock is not None:
            self.loop.unregister(self.sock)
            try:
                self.sock.close()
            except OSError:
                pass
            self.sock = None
        self._events = 0
        self._wbuf.clear()
        self._ping_sent = None
        self._handshake_left = 0

    def _fail_inflight(self) -> None:
        inflight, self._inflight = self._inflight, deque()
        for callback in inflight:
            if callback is not None:
                self._call(callback, LINK_LOST)

    def _check_health(self) -> None:
        """A stopped or wedged Redis sends nothing: ping an idle link, drop one that stays silent."""
        if self.state is not LinkState.READY:
            return
        now = self.loop.now
        if self._ping_sent is not None:
            if now - self._ping_sent > self._reply_timeout:
                self._fail(f"no reply for {self._reply_timeout:g} s")
            return
        if self._inflight and now - self._last_recv > self._reply_timeout:
            self._fail(f"no reply for {self._reply_timeout:g} s")
            return
        if now - self._last_recv >= PING_IDLE:
            self._ping_sent = now
            self.send_encoded(encode_command("PING"), None)

    # -- I/O -------------------------------------------------------------------------

    def _set_events(self, events: int) -> None:
        if self.sock is None or events == self._events:
            return
        if self._events:
            self.loop.modify(self.sock, events, self)
        else:
            self.loop.register(self.sock, events, self)
        self._events = events

    def uncork(self) -> None:
        """The loop's end-of-iteration flush: the queued commands leave in one send."""
        self._corked = False
        if self.state is LinkState.READY and self._queue:
            self._take_queue()
            self._write()

    def _take_queue(self) -> None:
        queue, self._queue = self._queue, deque()
        self._queued_bytes = 0
        wbuf, inflight, push = self._wbuf, self._inflight, self._on_push is not None
        for data, callback in queue:
            wbuf += data
            if not push:
                inflight.append(callback)

    def _write(self) -> None:
        sock = self.sock
        while self._wbuf and sock is not None:
            try:
                if isinstance(sock, ssl.SSLSocket):
                    sent = sock.send(self._wbuf[:TLS_CHUNK])
                else:
                    sent = sock.send(self._wbuf)
            except (BlockingIOError, ssl.SSLWantWriteError, ssl.SSLWantReadError):
                break
            except OSError as exc:
                self._fail(f"send: {exc.strerror or exc}")
                return
            del self._wbuf[:sent]
        if self.sock is not None and self.state is not LinkState.TLS_HANDSHAKE:
            self._set_events(EVENT_READ | EVENT_WRITE if self._wbuf else EVENT_READ)

    def _flush_blocking(self, timeout: float) -> None:
        assert self.sock is not None
        self._take_queue()
        deadline = time.monotonic() + timeout
        try:
            self.sock.settimeout(timeout)
            while self._wbuf and time.monotonic() < deadline:
                sent = self.sock.send(self._wbuf[:TLS_CHUNK])
                del self._wbuf[:sent]
        except OSError:
            pass

    def on_writable(self) -> None:
        state = self.state
        if state is LinkState.CONNECTING:
            self._connected()
        elif state is LinkState.TLS_HANDSHAKE:
            self._tls_handshake()
        else:
            self._write()

    def on_readable(self) -> None:
        state = self.state
        if state is LinkState.TLS_HANDSHAKE:
            self._tls_handshake()
            return
        if state is LinkState.CONNECTING:
            self._connected()
            return
        sock = self.sock
        if sock is None:
            return
        try:
            data = sock.recv(RECV_SIZE)
            while isinstance(sock, ssl.SSLSocket) and sock.pending():
                data += sock.recv(RECV_SIZE)
        except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
            return
        except OSError as exc:
            self._fail(f"recv: {exc.strerror or exc}")
            return
        if not data:
            self._fail("Redis closed the connection")
            return
        self._last_recv = self.loop.now
        self._ping_sent = None
        self._parser.feed(data)
        try:
            for reply in self._parser.replies():
                self._dispatch(reply)
                if self.sock is not sock:  # a callback or the handshake dropped the link
                    return
        except ProtocolError as exc:
            self._fail(f"not RESP: {exc}")
            return
        if self._parser.pending() > self._max_reply:
            self._fail(f"a reply over {self._max_reply} bytes")

    def _dispatch(self, reply: Reply) -> None:
        if self._handshake_left:
            self._handshake_reply(reply)
        elif self._on_push is not None:
            self._call(self._on_push, reply)
        elif self._inflight:
            callback = self._inflight.popleft()
            if callback is not None:
                self._call(callback, reply)
        else:
            self._fail("a reply to no command")

    def _call(self, callback: ReplyCallback, reply: Reply) -> None:
        try:
            callback(reply)
        except Exception:
            log.exception("error handling a reply on the %s link", self.name)

    def __repr__(self) -> str:
        return f"<RedisLink {self.name} {self.address} {self.state.value}>"


def resolve(address: RedisAddress) -> list[tuple[int, Any]]:
    """The socket addresses to try, resolved once (at start, before the loop serves anyone)."""
    if address.unix_path:
        return [(socket.AF_UNIX, address.unix_path)]
    infos = socket.getaddrinfo(address.host, address.port, type=socket.SOCK_STREAM)
    return [(family, sockaddr) for family, _, _, _, sockaddr in infos]


def _strerror(err: int) -> str:
    return os.strerror(err)
