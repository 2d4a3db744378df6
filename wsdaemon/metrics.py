"""``/metrics``: the server's plain counters as Prometheus families, built only when scraped.

Nothing here runs on the hot path. The loop, the connections and the server
keep integers they need anyway (or add one per ``recv``/``send``/batch, see
:mod:`wsdaemon.net.counters`); :class:`ServerCollector` reads them when a
scraper asks, and ``prometheus_client`` writes the text format
(``generate_latest``). Served by the daemon's own loop: no thread, no second
HTTP server. Names: ``wsdaemon_`` prefix, base units, ``_total`` on counters,
labels only of small fixed sets (transport, close code, HTTP status, outcome).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

from .net.counters import FAIRNESS, REFUSED, REFUSED_AT_ACCEPT, TRAFFIC, Histogram
from .net.listener import Listener
from .net.loop import EVENT_READ
from .net.sockets import bind_socket
from .proto.errors import HandshakeError
from .proto.forwarded import AddressList
from .transports.http import HttpConnection
from .transports.static import json_resource, respond_http
from .transports.upgrade import Router

__all__ = ["MetricsEndpoint", "ServerCollector", "exposition", "make_registry"]

log = logging.getLogger("wsdaemon.metrics")

#: Connections the metrics listener serves at once; past it new ones are closed at accept. Not counted
#: in ``max_connections`` (``/status`` must answer when the daemon is full), but bounded on its own.
METRICS_MAX_CONNECTIONS = 16


class MetricsAllow(AddressList):
    __slots__ = ()
    option = "metrics_allow"


class MetricsEndpoint:
    """``/metrics`` and ``/status``: on the public port only for ``--metrics-allow`` addresses, and on
    ``--metrics-listen HOST:PORT`` (a listener of the same loop that serves nothing else) for anyone
    who can reach it. The allow-list is checked against ``request.remote_address``: the client a
    trusted proxy names, else the socket's peer."""

    def __init__(self, server: Any) -> None:
        self.server = server
        self.registry = make_registry(server)
        self.allow = MetricsAllow(server.settings.metrics_allow)
        status = json_resource(server.status)
        server.router.routes["/status"] = self._guarded(status)
        server.router.routes["/metrics"] = self._guarded(self.serve_metrics)
        self.router = Router()
        self.router.upgrades = {}  # an upgrade on the metrics port is a 426
        self.router.routes = {"/status": status, "/metrics": self.serve_metrics}
        self.port: int | None = None
        #: Descriptors of the metrics listener's open connections (at most METRICS_MAX_CONNECTIONS).
        self.clients: set[int] = set()
        self._full = False

    def serve_metrics(self, conn: Any, request: Any) -> None:
        body = exposition(self.registry)
        respond_http(
            conn, request, 200, [("Content-Type", CONTENT_TYPE_LATEST), ("Cache-Control", "no-cache")], body
        )

    def _guarded(self, handler: Any) -> Any:
        def serve(conn: Any, request: Any) -> None:
            if not self.allow.contains(str(request.remote_address[0])):
                raise HandshakeError("served on --metrics-listen or to --metrics-allow addresses only", 403)
            handler(conn, request)

        return serve

    def start(self) -> None:
        spec = self.server.settings.metrics_listen
        if not spec:
            return
        host, _, port = spec.rpartition(":")
        sock = bind_socket(host.strip("[]") or "127.0.0.1", int(port), 128)
        sock.setblocking(False)
        self.port = sock.getsockname()[1]
        listener = Listener(self.server.loop, sock, self._new_connection, admit=self._admit)
        self.server.loop.register(sock, EVENT_READ, listener)
        self.server.listeners.append(listener)  # closed with the others at shutdown
        log.info("metrics and status on %s port %d", host or "127.0.0.1", self.port)

    def _admit(self, client: Any, address: Any) -> bool:
        """Its own cap, not ``max_connections`` nor the connection rate: closed at once past it."""
        if len(self.clients) < METRICS_MAX_CONNECTIONS:
            if self._full:
                self._full = False
                log.info("metrics listener: below its %d connections again", METRICS_MAX_CONNECTIONS)
            self.clients.add(client.fileno())
            return True
        if not self._full:
            self._full = True
            log.warning(
                "metrics listener: %d connections open; closing new ones until one ends",
                METRICS_MAX_CONNECTIONS,
            )
        REFUSED_AT_ACCEPT["metrics_limit"] += 1
        client.close()
        return False

    def _new_connection(self, client: Any, address: Any) -> HttpConnection:
        return HttpConnection(_MetricsHost(self.server, self.router, self.clients), client, address)

    def reload(self, settings: Any, old: Any = None) -> None:
        try:
            self.allow = MetricsAllow(settings.metrics_allow)
        except ValueError as exc:
            log.error("reload: %s; keeping the running allow-list", exc)


class _MetricsHost:
    """The server as the metrics port's HTTP connections see it: the same in all but the router and
    the count of open sockets (the listener's own, not ``max_connections``)."""

    def __init__(self, server: Any, router: Router, clients: set[int]) -> None:
        self._server = server
        self.router = router
        self._clients = clients

    def client_closed(self, fileno: int) -> None:
        self._clients.discard(fileno)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._server, name)


class ServerCollector:
    """Reads a running :class:`~wsdaemon.server.Server` at scrape time."""

    def __init__(self, server: Any) -> None:
        self.server = server

    def collect(self) -> Iterator[Metric]:
        s = self.server
        yield from self._connections(s)
        yield from self._traffic()
        yield from self._delivery(s)
        yield from self._sessions(s)
        yield from self._broker(s)
        yield from self._workers(s)
        yield from self._loop(s)
        yield from self._memory(s)

    # -- the families ---------------------------------------------------------------

    @staticmethod
    def _connections(s: Any) -> Iterator[Metric]:
        open_now = GaugeMetricFamily("wsdaemon_connections", "Connections open now.", labels=["transport"])
        by_transport: dict[str, int] = {}
        for conn in s.connections:
            by_transport[conn.protocol] = by_transport.get(conn.protocol, 0) + 1
        for transport in sorted(set(by_transport) | set(s.opened_total)):
            open_now.add_metric([transport], by_transport.get(transport, 0))
        yield open_now
        opened = CounterMetricFamily(
            "wsdaemon_connections_opened", "Connections opened (on_open ran).", labels=["transport"]
        )
        for transport, n in sorted(s.opened_total.items()):
            opened.add_metric([transport], n)
        yield opened
        closed = CounterMetricFamily(
            "wsdaemon_connections_closed", "Connections closed, by close code.", labels=["transport", "code"]
        )
        for (transport, code), n in sorted(s.closed_total.items(), key=lambda kv: (kv[0][0], kv[0][1] or 0)):
            closed.add_metric([transport, str(code)], n)
        yield closed
        refused = CounterMetricFamily(
            "wsdaemon_requests_refused",
            "Handshakes and requests answered with an HTTP error (403 on_connect, 408, 426, 431, 503...).",
            labels=["status"],
        )
        for status, n in sorted(REFUSED.items()):
            refused.add_metric([str(status)], n)
        yield refused
        at_accept = CounterMetricFamily(
            "wsdaemon_connections_refused",
            "Client sockets refused at accept, before a byte was read (a 503, or closed on a TLS port): "
            "limit (max_connections), rate (max_connects_per_second), metrics_limit (the metrics "
            "listener's cap).",
            labels=["reason"],
        )
        for reason, n in sorted(REFUSED_AT_ACCEPT.items()):
            at_accept.add_metric([reason], n)
        yield at_accept

    @staticmethod
    def _traffic() -> Iterator[Metric]:
        names = (
            ("wsdaemon_received_bytes", "Bytes received."),
            ("wsdaemon_sent_bytes", "Bytes sent."),
            ("wsdaemon_received_frames", "Frames received (WebSocket data and control frames)."),
            ("wsdaemon_sent_frames", "Frames and HTTP answers written."),
        )
        for index, (name, doc) in enumerate(names):
            family = CounterMetricFamily(
                name, doc + " By transport (http: plain HTTP and long-polling).", labels=["transport"]
            )
            for transport, counts in sorted(TRAFFIC.items()):
                family.add_metric([transport], counts[index])
            yield family

    @staticmethod
    def _delivery(s: Any) -> Iterator[Metric]:
        yield CounterMetricFamily(
            "wsdaemon_slow_consumers_closed",
            "Connections closed as slow consumers (1008).",
            value=s.slow_consumers,
        )
        limited = CounterMetricFamily(
            "wsdaemon_rate_limited",
            "Connections closed (1008) by --max-messages-per-second or --max-control-frames-per-second, "
            "and messages dropped by --rate-limit-action drop.",
            labels=["what", "action"],
        )
        limited.add_metric(["messages", "closed"], s.rate_limited["messages"])
        limited.add_metric(["control_frames", "closed"], s.rate_limited["control_frames"])
        limited.add_metric(["messages", "dropped"], FAIRNESS["rate_dropped"])
        yield limited
        yield CounterMetricFamily(
            "wsdaemon_read_budget_deferred",
            "Reads whose frames went past --read-budget and were parsed over later loop turns.",
            value=FAIRNESS["budget_deferred"],
        )
        live = list(s.connections)
        replaced = s.replaced_closed + sum(getattr(c, "replaced", 0) for c in live)
        dropped = s.dropped_closed + sum(getattr(c, "dropped", 0) for c in live)
        yield CounterMetricFamily(
            "wsdaemon_conflated_replaced",
            "Keyed messages replaced by a newer one before they left.",
            value=replaced,
        )
        yield CounterMetricFamily(
            "wsdaemon_volatile_dropped", "Volatile messages dropped while backlogged.", value=dropped
        )
        rooms = s.room_registry.rooms
        yield GaugeMetricFamily("wsdaemon_rooms", "Rooms with members.", value=len(rooms))
        yield GaugeMetricFamily(
            "wsdaemon_room_members", "Memberships over all rooms.", value=sum(len(m) for m in rooms.values())
        )

    @staticmethod
    def _sessions(s: Any) -> Iterator[Metric]:
        stats = s.sessions.stats()
        yield GaugeMetricFamily("wsdaemon_sessions", "Resumable sessions.", value=stats["sessions"])
        yield GaugeMetricFamily(
            "wsdaemon_sessions_suspended", "Sessions waiting for a resume.", value=stats["suspended"]
        )
        yield CounterMetricFamily(
            "wsdaemon_sessions_resumed", "Resumes that found their session.", value=s.sessions.resumed
        )
        yield CounterMetricFamily(
            "wsdaemon_sessions_not_recovered",
            "Resumes of a session that was gone (4000 / 410).",
            value=s.sessions.not_recovered,
        )
        process = getattr(s, "process", None)
        if process is not None:  # --processes: requests handed to or from another child
            moved = CounterMetricFamily(
                "wsdaemon_handoffs",
                "Requests of another child's session handed over (sent), taken from a sibling "
                "(adopted), or answered 503 because the owner could not take them (refused).",
                labels=["outcome"],
            )
            for outcome in ("sent", "adopted", "refused"):
                moved.add_metric([outcome], getattr(process, outcome))
            yield moved
        if s.longpoll is not None:
            lp = s.longpoll.stats()
            yield GaugeMetricFamily(
                "wsdaemon_longpoll_sessions", "Long-polling sessions.", value=lp["sessions"]
            )
            yield GaugeMetricFamily(
                "wsdaemon_longpoll_held_polls", "Polls held open now.", value=lp["held_polls"]
            )

    @staticmethod
    def _broker(s: Any) -> Iterator[Metric]:
        broker = s.broker
        if broker is None:
            return
        up = GaugeMetricFamily("wsdaemon_broker_up", "1 while the Redis link is ready.", labels=["link"])
        up.add_metric(["commands"], 1 if broker.commands.ready else 0)
        up.add_metric(["subscriber"], 1 if broker.subscriber.ready else 0)
        yield up
        lost = CounterMetricFamily(
            "wsdaemon_broker_link_losses", "Times a ready Redis link was lost.", labels=["link"]
        )
        lost.add_metric(["commands"], broker.commands.losses)
        lost.add_metric(["subscriber"], broker.subscriber.losses)
        yield lost
        publications = CounterMetricFamily(
            "wsdaemon_broker_publications",
            "Room publications and broadcasts sent to other nodes, received from them, and dropped "
            "(the buffer was full while Redis was away or slow).",
            labels=["outcome"],
        )
        publications.add_metric(["sent"], broker.published)
        publications.add_metric(["received"], broker.received)
        publications.add_metric(["dropped"], broker.dropped)
        yield publications
        yield GaugeMetricFamily(
            "wsdaemon_broker_buffered_bytes", "Commands waiting for Redis.", value=broker.commands.buffered
        )

    @staticmethod
    def _workers(s: Any) -> Iterator[Metric]:
        pool = s.workers
        if pool is None:
            return
        yield GaugeMetricFamily(
            "wsdaemon_worker_queue_depth", "Tasks waiting for a worker.", value=len(pool.queue)
        )
        yield GaugeMetricFamily(
            "wsdaemon_workers",
            "Worker connections.",
            value=sum(1 for w in pool.workers if w.state == "ready"),
        )
        yield CounterMetricFamily(
            "wsdaemon_worker_tasks_submitted", "Tasks submitted.", value=pool.counters["submitted"]
        )
        finished = CounterMetricFamily(
            "wsdaemon_worker_tasks_finished", "Tasks finished.", labels=["outcome"]
        )
        for outcome in ("completed", "failed", "timed_out"):
            finished.add_metric([outcome], pool.counters[outcome])
        yield finished
        supervisor = pool.supervisor
        yield CounterMetricFamily(
            "wsdaemon_worker_crash_replacements",
            "Worker processes replaced after ending unplanned (crash, kill, task timeout).",
            value=supervisor.crash_replacements,
        )
        yield CounterMetricFamily(
            "wsdaemon_worker_rolling_restarts",
            "Rolling restarts of the workers (SIGHUP), each replacing every worker once.",
            value=supervisor.rolling_restarts,
        )
        yield histogram(
            "wsdaemon_worker_task_duration_seconds", "Seconds from submit to answer.", pool.durations
        )

    @staticmethod
    def _loop(s: Any) -> Iterator[Metric]:
        yield CounterMetricFamily(
            "wsdaemon_loop_iterations", "Event loop iterations.", value=s.loop.iterations
        )
        yield histogram("wsdaemon_loop_lag_seconds", "How late timers fire.", s.loop.lag)

    @staticmethod
    def _memory(s: Any) -> Iterator[Metric]:
        memory = getattr(s, "memory", None)
        if memory is None:
            return
        yield CounterMetricFamily(
            "wsdaemon_memory_trims",
            "Times freed memory was handed back (gc.collect, malloc_trim).",
            value=memory.trims,
        )
        yield CounterMetricFamily(
            "wsdaemon_memory_returned_bytes", "RSS handed back by those trims.", value=memory.returned_bytes
        )


def histogram(name: str, doc: str, h: Histogram) -> HistogramMetricFamily:
    buckets = [("+Inf" if bound == float("inf") else repr(bound), n) for bound, n in h.cumulative()]
    return HistogramMetricFamily(name, doc, buckets=buckets, sum_value=h.sum)


def make_registry(server: Any) -> CollectorRegistry:
    """The server's collector and the standard process collector (CPU, RSS, open descriptors)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ServerCollector(server))
    ProcessCollector(registry=registry)
    return registry


def exposition(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)
