"""The server, the composition root: listeners, admission, deadlines, transports, broadcast, shutdown."""

from __future__ import annotations

import logging
import os
import signal
import socket
import ssl
import time
from collections.abc import Callable, Hashable, Iterable, KeysView
from dataclasses import fields, replace
from functools import partial
from typing import Any

from .application import Application
from .metrics import MetricsEndpoint
from .net.admission import Admission
from .net.deadlines import Deadlines
from .net.listener import Listener
from .net.loop import EVENT_READ, EventLoop, TimerHandle
from .net.sockets import bind_socket, check_descriptor_limit, format_address
from .net.stream import StreamConnection
from .net.tls import TlsHandshake, make_server_context
from .proto import masking
from .proto.codes import CloseCode
from .proto.errors import HandshakeError, Reject
from .proto.forwarded import ProxyTrust
from .proto.http11 import Request, reason_phrase
from .proto.origin import OriginPolicy, is_loopback_host, request_origin
from .settings import Settings
from .transports.appconnection import AppConnection
from .transports.connlog import ConnectionLog
from .transports.fanout import fan_out
from .transports.http import HttpConnection
from .transports.longpoll_transport import LongPolling
from .transports.rfc6455_connection import CONTROL_RATE_REASON, MESSAGE_RATE_REASON
from .transports.rooms import Presence, Room, RoomRegistry
from .transports.session import SessionManager
from .transports.static import StaticFiles, install_app_pages
from .transports.upgrade import Router

log = logging.getLogger("wsdaemon.server")

IDLE_SWEEP_INTERVAL = 1.0
#: Descriptors the daemon needs besides its clients (listeners, workers, logs, pipes).
SPARE_DESCRIPTORS = 64


class Server:
    """One daemon process: an :class:`Application` served on one :class:`EventLoop`.

    It is the :class:`~wsdaemon.net.stream.StreamHost` of every client socket:
    deadlines go to its :class:`Deadlines`, closed sockets to its :class:`Admission`.
    """

    def __init__(self, app: Application, settings: Settings | None = None, loop: EventLoop | None = None):
        self.app = app
        self.settings = settings or Settings()
        self.loop = loop or EventLoop()
        #: Open connections of every transport, as the application sees them.
        self.connections: set[AppConnection] = set()
        self._opened_since_summary = 0
        self._closed_since_summary = 0
        #: Rooms and their members (conn.join / conn.leave); room.publish is self.publish.
        self.room_registry = RoomRegistry(self.publish, app.handle_join, app.handle_leave)
        #: The other daemons through Redis (``--broker``), or None: this daemon alone.
        self.broker: Any = None
        #: Clients refused by the application's on_connect (a Reject), and on_connect failures.
        self.rejected = 0
        self.connect_errors = 0
        #: Handshake, close and drain timeouts of the stream connections.
        self.deadlines = Deadlines(self.loop)
        #: ``watch(conn)``: have ``conn.on_deadline`` called once ``conn.deadline`` has passed;
        #: ``unwatch(conn)`` forgets it (the deadline service's own, bound once).
        self.watch = self.deadlines.watch
        self.unwatch = self.deadlines.unwatch
        #: ``max_connections``: the client sockets served, the refusals past the limit.
        self.admission = Admission(self)
        #: ``client_closed(fileno)``: a client socket is being closed, it no longer counts towards
        #: ``max_connections`` (the admission's own, bound once).
        self.client_closed = self.admission.client_closed
        self.origin_policy = OriginPolicy(self.settings.allowed_origins, self.settings.allow_missing_origin)
        self.proxy_trust = ProxyTrust(self.settings.trusted_proxies) or None
        self.tls_context = (
            make_server_context(self.settings.certfile, self.settings.keyfile)
            if self.settings.certfile
            else None
        )
        self.tls_port: int | None = None
        self.router = Router()
        self.listeners: list[Listener] = []
        self.port: int | None = None
        self.started_at = time.monotonic()
        self.stopping = False
        self._timers: list[TimerHandle] = []
        self._keepalive_timer: TimerHandle | None = None
        #: Returns fresh settings on SIGHUP (the service layer reads the config file again).
        self.settings_loader: Callable[[], Settings] | None = None
        if self.settings.static:
            StaticFiles().install(self.router)
        install_app_pages(self.router, app.routes, app.static_directories)
        #: Parts started, reloaded, shut down and closed with the server (see add_component).
        self.components: list[Any] = []
        self.add_component(self.admission)  # the sweep of its rate buckets
        #: The worker pool for the application's task functions, when configured.
        self.workers: Any = None
        if self.settings.workers or self.settings.worker_listen:
            from .workers.pool import WorkerPool

            self.workers = self.add_component(WorkerPool(self, app.tasks))
            app.bind_task_runner(self.workers.submit)
        #: Plain counters for ``/metrics`` (read at scrape time, see wsdaemon/metrics.py).
        self.opened_total: dict[str, int] = {}
        self.closed_total: dict[tuple[str, int | None], int] = {}
        self.slow_consumers = 0
        #: Connections closed (1008) by a rate limit: "messages" or "control_frames".
        self.rate_limited = {"messages": 0, "control_frames": 0}
        #: Conflated (replaced) and volatile (dropped) messages of connections already closed.
        self.replaced_closed = 0
        self.dropped_closed = 0
        #: Each connection's open and close line (``--log-connections``), rate-limited.
        self.connection_log = self.add_component(
            ConnectionLog(self.loop, self.settings.log_connections, self.settings.log_connections_rate)
        )
        if self.settings.broker:
            from .broker.node import Broker

            self.broker = self.add_component(
                Broker(self.loop, self.settings, self.room_registry, self._deliver_remote, self._local_users)
            )
        #: ``/metrics`` and ``/status`` (the allow-list, the optional metrics port).
        self.metrics = self.add_component(MetricsEndpoint(self))
        #: Resumable sessions of the JS client, whatever transport carries them.
        self.sessions = self.add_component(SessionManager(self))
        #: With ``--processes``: this child's slot and handovers (transports/handoff.py), else None.
        self.process: Any = None
        #: Hands freed memory back after a crowd leaves (daemon/malloc_tuning.py), or None.
        self.memory: Any = None
        #: The long-polling transport (``/lp/``), or None when disabled.
        self.longpoll: LongPolling | None = None
        if self.settings.longpoll:
            self.longpoll = self.add_component(LongPolling(self))
            self.longpoll.install(self.router)

    def add_component(self, component: Any, *, first: bool = False) -> Any:
        """Tie ``component`` to the server's life: its ``start()``, ``reload(settings, old)`` (SIGHUP),
        ``shutdown()`` and ``close()`` are called, when it has them, with the server's.

        ``first`` puts it before the others (the log setup: a reload's own lines use the new level).
        """
        if first:
            self.components.insert(0, component)
        else:
            self.components.append(component)
        return component

    def _call_components(self, method: str, *args: Any) -> None:
        for component in list(self.components):
            fn = getattr(component, method, None)
            if fn is not None:
                try:
                    fn(*args)
                except Exception:
                    log.exception("error in %s.%s()", type(component).__name__, method)

    # -- sockets -----------------------------------------------------------------

    def listen(self, sock: socket.socket | None = None) -> socket.socket:
        """Bind the browser port (or adopt ``sock``) and add it to the loop.

        With a certificate the port speaks TLS, unless ``tls_port`` asks for a
        second, TLS-only port beside the plain one.
        """
        settings = self.settings
        if sock is None:
            sock = bind_socket(settings.host, settings.port, settings.backlog)
        self.port = sock.getsockname()[1]
        tls_here = self.tls_context is not None and not settings.tls_port
        self._add_listener(sock, secure=tls_here)
        if tls_here:
            self.tls_port = self.port
        elif self.tls_context is not None:
            tls_sock = bind_socket(settings.host, settings.tls_port, settings.backlog)
            self.tls_port = tls_sock.getsockname()[1]
            self._add_listener(tls_sock, secure=True)
        return sock

    def _add_listener(self, sock: socket.socket, secure: bool) -> None:
        sock.setblocking(False)
        make = self._new_tls_connection if secure else partial(HttpConnection, self)
        admit = partial(self.admission.admit, secure=True) if secure else self.admission.admit
        listener = Listener(self.loop, sock, make, admit=admit)
        self.loop.register(sock, EVENT_READ, listener)
        self.listeners.append(listener)

    def _new_tls_connection(self, client: socket.socket, address: Any) -> TlsHandshake:
        return TlsHandshake(self, client, address, self.tls_context, self._new_https_connection)

    def _new_https_connection(self, client: ssl.SSLSocket, address: Any) -> HttpConnection:
        return HttpConnection(self, client, address, secure=True)

    def _reload_request_policies(self, settings: Settings, old: Settings) -> None:
        try:
            self.origin_policy = OriginPolicy(settings.allowed_origins, settings.allow_missing_origin)
        except ValueError as exc:
            log.error("reload: bad allowed_origins (%s); keeping the running Origin policy", exc)
        try:
            self.proxy_trust = ProxyTrust(settings.trusted_proxies) or None
        except ValueError as exc:
            log.error("reload: %s; keeping the running trusted proxies", exc)

    def reload_tls(self) -> bool:
        """Load the certificate and key again (SIGHUP); new connections use them.

        A certificate that does not load is logged and the current one kept.
        """
        if not self.settings.certfile:
            return False
        if self.tls_context is None:
            log.warning("reload: TLS was off at start; serving TLS needs a restart")
            return False
        try:
            context = make_server_context(self.settings.certfile, self.settings.keyfile)
        except (OSError, ValueError, ssl.SSLError) as exc:
            log.error("TLS certificate not reloaded, keeping the current one: %s", exc)
            return False
        self.tls_context = context
        log.info("TLS certificate reloaded from %s", self.settings.certfile)
        return True

    def check_origin(self, request: Request) -> None:
        """Refuse a request whose Origin is not allowed, with 403 and a log line.

        Every transport calls it before it accepts a handshake or a long-polling
        request; see :mod:`wsdaemon.proto.origin` for the policy.
        """
        if self.origin_policy.allows_any:
            return
        origin = request_origin(request.headers)
        reason = self.origin_policy.check(origin)
        if reason is not None:
            log.warning(
                "refused %s %s from %r: %s (client %s)",
                request.method,
                request.path,
                origin,
                reason,
                format_address(request.remote_address),
            )
            raise HandshakeError(reason, 403)

    def authenticate(self, request: Request) -> Any:
        """Run the application's ``on_connect`` for a handshake or long-polling open.

        Returns the user (``conn.user``). A :class:`Reject` becomes a HandshakeError
        with its status and reason (the transport answers and logs it, one line);
        any other exception is logged with its traceback and answered 500.
        """
        try:
            return self.app.handle_connect(request)
        except Reject as exc:
            self.rejected += 1
            raise HandshakeError(exc.reason, exc.status, phrase=reason_phrase(exc.reason)) from None
        except Exception:
            self.connect_errors += 1
            log.exception("error in on_connect for %s %s; answering 500", request.method, request.path)
            raise HandshakeError("internal server error", 500) from None

    def status(self) -> dict[str, Any]:
        """``/status``: pid, port, uptime, open connections per protocol, workers, long-polling."""
        by_protocol: dict[str, int] = {}
        for conn in self.connections:
            by_protocol[conn.protocol] = by_protocol.get(conn.protocol, 0) + 1
        doc: dict[str, Any] = {
            "pid": os.getpid(),
            "port": self.port,
            "uptime": round(time.monotonic() - self.started_at, 3),
            "connections": len(self.connections),
            "by_protocol": by_protocol,
            "rooms": len(self.room_registry.rooms),
            "rejected": self.rejected,
            "on_connect_errors": self.connect_errors,
        }
        if self.workers is not None:
            doc["workers"] = self.workers.stats()
        if self.longpoll is not None:
            doc["long_polling"] = self.longpoll.stats()
        doc["resumable_sessions"] = self.sessions.stats()
        if self.process is not None:
            doc["process"] = self.process.status()
        if self.broker is not None:
            doc["broker"] = self.broker.stats()
        if self.memory is not None:
            doc["memory"] = self.memory.stats()
        return doc

    # -- the transports' host ----------------------------------------------------

    def connection_opened(self, conn: AppConnection) -> None:
        self.connections.add(conn)
        self._opened_since_summary += 1
        opened = self.opened_total
        opened[conn.protocol] = opened.get(conn.protocol, 0) + 1

    def connection_closed(self, conn: AppConnection) -> None:
        if conn in self.connections:
            self.connections.discard(conn)
            self._closed_since_summary += 1
            key = (conn.protocol, conn.close_code)
            self.closed_total[key] = self.closed_total.get(key, 0) + 1
            reason = conn.close_reason
            if reason == "slow consumer":
                self.slow_consumers += 1
            elif reason == MESSAGE_RATE_REASON:
                self.rate_limited["messages"] += 1
            elif reason == CONTROL_RATE_REASON:
                self.rate_limited["control_frames"] += 1
            self.replaced_closed += getattr(conn, "replaced", 0)
            self.dropped_closed += getattr(conn, "dropped", 0)

    def _log_summary(self) -> None:
        """One INFO line per interval instead of two per connection: a reconnect storm stays one line."""
        opened, closed = self._opened_since_summary, self._closed_since_summary
        if not opened and not closed:
            return
        self._opened_since_summary = self._closed_since_summary = 0
        by_protocol: dict[str, int] = {}
        for conn in self.connections:
            by_protocol[conn.protocol] = by_protocol.get(conn.protocol, 0) + 1
        per = ", ".join(f"{name} {count}" for name, count in sorted(by_protocol.items()))
        log.info(
            "connections: %d opened, %d closed in the last %s; %s open%s",
            opened,
            closed,
            f"{self.settings.log_summary_interval:g} s",
            plural(len(self.connections), "connection"),
            f" ({per})" if per else "",
        )

    def _keepalive(self) -> None:
        now = time.monotonic()
        interval, timeout = self.settings.ping_interval, self.settings.ping_timeout
        for conn in list(self.connections):
            conn.check_keepalive(now, interval, timeout)

    def _close_idle(self) -> None:
        """Let each connection close itself when idle for ``idle_timeout`` (its ``check_idle``)."""
        limit = self.settings.idle_timeout
        if limit <= 0:
            return
        now = time.monotonic()
        for conn in list(self.connections):
            conn.check_idle(now, limit)

    # -- the application's API ---------------------------------------------------

    def call_later(self, delay: float, callback: Callable, *args: Any) -> TimerHandle:
        """Run ``callback(*args)`` once, ``delay`` seconds from now, in the loop; ``.cancel()`` the handle to drop it."""
        return self.loop.call_later(delay, callback, *args)

    def call_every(self, interval: float, callback: Callable, *args: Any) -> TimerHandle:
        """Run ``callback(*args)`` every ``interval`` seconds in the loop until the handle is cancelled."""
        return self.loop.call_every(interval, callback, *args)

    def broadcast(
        self,
        message: str | bytes,
        connections: Iterable[AppConnection] | None = None,
        exclude: AppConnection | None = None,
    ) -> int:
        """Send ``message`` to every open connection (or ``connections``); encoded once per wire format.

        With a broker, a broadcast to everyone reaches every node. Returns how many
        connections here got it: a binary message skips hixie clients.
        """
        if connections is None:
            if self.broker is not None:
                self.broker.broadcast(message)
            connections = self.connections
        return fan_out(connections, message, exclude)

    def publish(
        self,
        room: str,
        message: str | bytes,
        exclude: AppConnection | None = None,
        key: Hashable | None = None,
    ) -> int:
        """Send ``message`` to every open member of ``room`` but ``exclude``: O(members),
        encoded once per wire format; ``key`` conflates it (docs/rooms.md). With a broker,
        members on every node get it. Returns how many here got it."""
        if self.broker is not None:
            self.broker.publish(room, message, key)
        return self._fan_out_room(room, message, exclude, key)

    def _fan_out_room(
        self, room: str, message: str | bytes, exclude: AppConnection | None, key: Hashable | None
    ) -> int:
        """``message`` to this node's open members of ``room`` but ``exclude``."""
        members = self.room_registry.rooms.get(room)
        return fan_out(members.members, message, exclude, key) if members is not None else 0

    def _deliver_remote(self, room: str | None, message: str | bytes, key: str | None) -> int:
        """A publication of another node, for this node's members (or everyone: a broadcast)."""
        if room is None:
            return fan_out(self.connections, message)
        return self._fan_out_room(room, message, None, key)

    def room(self, name: str) -> Room:
        """Room ``name``: ``len()``, iteration over its members, ``publish()`` (empty if nobody is in it)."""
        return self.room_registry.get(name)

    @property
    def rooms(self) -> KeysView[str]:
        """The names of the rooms that have members here (a live, read-only view)."""
        return self.room_registry.names()

    def _local_users(self, room: str) -> list[Any]:
        members = self.room_registry.rooms.get(room)
        return members.users if members is not None else []

    def presence(self, room: str) -> Presence:
        """The users (``conn.user``) of ``room``'s members; with a broker, those of every node as last
        seen (``.stale`` is True while Redis is away; docs/scaling.md)."""
        if self.broker is not None:
            return self.broker.presence(room)
        return Presence(self._local_users(room))

    def fetch_presence(self, room: str, callback: Callable[[Presence], None], timeout: float = 1.0) -> None:
        """``callback(presence)`` with ``room``'s presence read from Redis (for a room without members
        here), or the local view marked stale after ``timeout``; without a broker, the local view."""
        if self.broker is not None:
            self.broker.fetch_presence(room, callback, timeout)
        else:
            self.loop.call_soon(callback, self.presence(room))

    # -- running -----------------------------------------------------------------

    def start(self) -> None:
        """Prepare timers and signals; :meth:`serve_forever` calls it."""
        if not self.listeners:
            self.listen()
        self.started_at = time.monotonic()
        self.deadlines.start()
        self._schedule_keepalive()
        for component in self.components:
            start = getattr(component, "start", None)
            if start is not None:
                start()
        self._timers.append(self.loop.call_every(IDLE_SWEEP_INTERVAL, self._close_idle))
        if self.settings.log_summary_interval > 0:
            self._timers.append(self.loop.call_every(self.settings.log_summary_interval, self._log_summary))
        if self.tls_port is not None:
            log.info("TLS (wss://, https://) on port %d", self.tls_port)
        check_descriptor_limit(self.settings.max_connections + self.settings.workers + SPARE_DESCRIPTORS)
        if self.origin_policy.allow_all and not is_loopback_host(self.settings.host):
            log.warning(
                "listening on %s with no --allowed-origins: pages of any site may connect",
                self.settings.host or "all addresses",
            )
        self.app.started(self)

    def _schedule_keepalive(self) -> None:
        if self._keepalive_timer is not None:
            self._keepalive_timer.cancel()
            self._keepalive_timer = None
        if self.settings.ping_interval > 0:
            period = min(1.0, self.settings.ping_interval / 2)
            self._keepalive_timer = self.loop.call_every(period, self._keepalive)

    def install_signal_handlers(self) -> None:
        for signum in (signal.SIGTERM, signal.SIGINT):
            self.loop.add_signal_handler(signum, self._stop_signal)
        self.loop.add_signal_handler(signal.SIGHUP, self._reload_signal)

    def _stop_signal(self) -> None:
        if self.stopping:
            log.warning("second stop signal: exiting without waiting for clients")
            self.loop.stop()
        else:
            self.shutdown()

    def _reload_signal(self) -> None:
        log.info("SIGHUP: reloading")
        settings = None
        if self.settings_loader is not None:
            try:
                settings = self.settings_loader()
            except Exception as exc:
                log.error("reload failed, keeping the running configuration: %s", exc)
                return
        self.reload(settings)

    def reload(self, settings: Settings | None = None) -> None:
        """SIGHUP: take the new settings (if given), then every component and the TLS certificate reload.

        Settings declared ``restart=True`` (address, port, application, workers...)
        keep their running value. Read live, so they apply at once: timeouts, the
        ping interval, ``max_write_buffer`` (checked on every queued write),
        ``max_connections``, the Origin list, the log level and file, and the
        long-polling limits except its queue. Read when a connection is created, so
        they apply to connections opened after the reload: the header limits, the
        WebSocket message and frame-count limits, the ``compression*`` options,
        ``longpoll_max_queue``. The
        worker pool restarts its workers one at a time.
        """
        old = self.settings
        applied: list[str] = []
        if settings is not None:
            applied = self._take_settings(settings)
            self._reload_request_policies(self.settings, old)
        self._schedule_keepalive()
        self._call_components("reload", self.settings, old)
        for name in applied:
            log.debug("reload: %s %r -> %r", name, getattr(old, name), getattr(self.settings, name))
        if settings is not None:
            log.info("configuration reloaded; changed: %s", ", ".join(applied) or "nothing")
        self.reload_tls()

    def _take_settings(self, settings: Settings) -> list[str]:
        """Replace the running settings, keeping those that need a restart; the names applied."""
        old = self.settings
        changed = [f for f in fields(Settings) if getattr(old, f.name) != getattr(settings, f.name)]
        kept = [f.name for f in changed if f.metadata.get("restart")]
        if kept:
            log.warning("reload: %s only change at a restart; keeping the running values", kept)
            settings = replace(settings, **{name: getattr(old, name) for name in kept})
        self.settings = settings
        return [f.name for f in changed if f.name not in kept]

    def serve_forever(self) -> None:
        self.start()
        self.install_signal_handlers()
        log.info(
            "listening on %s port %s (app %s, masking %s)",
            self.settings.host,
            self.port,
            self.settings.app,
            "in C" if masking.ACCELERATED else "in pure Python",
        )
        try:
            self.loop.run()
        finally:
            self.close()

    def shutdown(self, code: int = CloseCode.GOING_AWAY, reason: str = "server shutting down") -> None:
        """Stop accepting, close every client with ``code``, wait for them up to the grace period."""
        if self.stopping:
            return
        self.stopping = True
        log.info("shutting down: closing %s", plural(len(self.connections), "connection"))
        for listener in self.listeners:
            listener.close()
        self._call_components("shutdown")
        for conn in list(self.connections):
            try:
                conn.close(code, reason)
            except Exception:
                log.exception("error closing %r", conn)
        for handler in self._stream_handlers():
            handler.close_if_idle()  # idle keep-alive HTTP connections would only delay the exit
        deadline = time.monotonic() + self.settings.shutdown_grace
        self._wait_for_clients(deadline)

    def _wait_for_clients(self, deadline: float) -> None:
        if not self._stream_handlers() or time.monotonic() >= deadline:
            self.loop.stop()
            return
        self.loop.call_later(0.02, self._wait_for_clients, deadline)

    def _stream_handlers(self) -> list[StreamConnection]:
        return [k.data for k in self.loop.selector.get_map().values() if isinstance(k.data, StreamConnection)]

    def close(self) -> None:
        """Drop whatever is left and release the loop."""
        for timer in self._timers:
            timer.cancel()
        self.deadlines.stop()
        if self._keepalive_timer is not None:
            self._keepalive_timer.cancel()
        for listener in self.listeners:
            listener.close()
        self._call_components("close")
        for conn in self._stream_handlers():
            conn.close_transport()
        try:
            self.app.stopped(self)
        finally:
            self.loop.close()


def plural(count: int, noun: str) -> str:
    """``1 connection``, ``2 connections``."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"
