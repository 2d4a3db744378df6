"""Long-polling over plain HTTP on the browser port: sessions, held polls, posts, CORS.

The I/O half of long-polling (the protocol itself is :mod:`wsdaemon.longpoll`).
:class:`LongPolling` answers every request under ``/lp/`` on the ordinary
:class:`~wsdaemon.transports.http.HttpConnection` (keep-alive included); a
:class:`LongPollSession` is what the application sees, with the same API as a
WebSocket connection and ``protocol == "long-polling"``. A poll with nothing to
deliver is held on its HTTP connection until a message is queued or the hold
time passes. See ``docs/long-polling.md`` for the wire protocol.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from typing import Any

from ..net.sockets import format_address
from ..proto import longpoll
from ..proto.codes import CLOSED, CLOSING, OPEN, CloseCode
from ..proto.errors import HandshakeError, ProtocolError
from ..proto.http11 import Request, build_response, is_token
from ..proto.longpoll import EV_CLOSE
from ..proto.origin import parse_origin, request_origin
from ..proto.session import NOT_RECOVERED_REASON, Close, SequenceGap, parse_session_param
from .host import TransportHost
from .session import without_session_param
from .upgrade import select_subprotocol

log = logging.getLogger("wsdaemon.longpoll")

PREFIX = "/lp/"
OPEN_PATH = "open"
SWEEP_INTERVAL = 0.5
_PREFLIGHT_MAX_AGE = "600"


class LongPollSession:
    """The long-polling carrier of one session: at most one held poll, the session's numbers as JSON.

    What the application sees is the :class:`~wsdaemon.transports.session.Session`;
    this object answers its polls and posts. A session that did not ask to be
    resumable (a raw long-polling client) ends when its polls stop.
    """

    __slots__ = (
        "host",
        "id",
        "manager",
        "session",
        "poll",
        "idle_since",
        "linger_until",
        "close_received",
        "_live",
        "_flush_scheduled",
    )

    protocol = "long-polling"

    def __init__(self, manager: LongPolling, session: Any):
        self.manager = manager
        self.host = manager.host
        self.session = session
        self.id = session.id
        #: The held poll, if any.
        self.poll: HeldPoll | None = None
        self.idle_since = self.host.loop.now
        #: After the close (ours or the client's), when the carrier is dropped for good.
        self.linger_until = 0.0
        self.close_received = False
        self._live = True
        self._flush_scheduled = False
        manager.live += 1

    @property
    def proto(self) -> Any:
        return self.session.proto

    # -- the carrier's API (see transports/session.py) -----------------------------

    def carry(self, seq: int, message: Any) -> bool:
        """Queue message ``seq`` for the next poll response; it counts as carried once a response holds it."""
        if type(message) is Close:
            self._linger()
            session = self.session
            if self.host.stopping and session.state == CLOSING:
                # No new request can reach us: the close item goes out with the held poll, if any.
                self._release(session.close_code or CloseCode.GOING_AWAY, session.close_reason)
        self._schedule_flush()
        return False

    def carry_many(self, start: int, messages: list[Any]) -> bool:
        """Like :meth:`carry`: the next poll response takes them from the session."""
        self._schedule_flush()
        return False

    def carry_ack(self, seq: int) -> None:
        """Nothing to do: every post response and poll response carries the ack."""

    def detach(self) -> None:
        """The session resumed on another transport: this one is dropped (its requests get 404)."""
        self._live_end()
        self._drop()

    @property
    def backlogged(self) -> bool:
        """True while messages wait that no poll response has carried yet (a volatile send is dropped)."""
        return self.proto.uncarried

    def check_keepalive(self, now: float, interval: float, timeout: float) -> None:
        """Polls are the keepalive: see :meth:`check_timers`."""

    def check_idle(self, now: float, limit: float) -> None:
        """The expiry of polls is the idle limit: see :meth:`check_timers`."""

    # -- outbound ----------------------------------------------------------------

    def _schedule_flush(self) -> None:
        # Messages queued in one loop iteration leave together in one poll response.
        if self.poll is not None and not self._flush_scheduled:
            self._flush_scheduled = True
            self.host.loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        if self.poll is not None and self.proto.entries:
            self._answer_poll()

    def response(self, **extra: Any) -> bytes:
        return longpoll.encode_response(self.proto, **extra)

    def _answer_poll(self) -> None:
        poll = self.poll
        if poll is None:
            return
        self.poll = None
        self.idle_since = self.host.loop.now
        poll.respond(self.response())

    # -- requests ----------------------------------------------------------------

    def handle_poll(self, conn: Any, request: Request, cors: list[tuple[str, str]]) -> None:
        """A poll: apply its ack, then answer with what is unacknowledged or hold it."""
        ack = longpoll.parse_ack(request.query)
        close_confirmed = self.proto.acknowledge(ack)
        if self.poll is not None:
            # A newer poll replaces the held one, which is answered at once (empty).
            old, self.poll = self.poll, None
            old.respond(longpoll.encode_batch(self.proto.received_seq, []))
        if close_confirmed:
            self._close_confirmed()
        now = self.host.loop.now
        self.idle_since = now
        keep_alive = request.keep_alive and not self.host.stopping
        if self.proto.entries or self.session.state == CLOSED or not self._live:
            self.manager.respond_json(conn, 200, self.response(), cors, keep_alive)
            return
        self.poll = HeldPoll(self, conn, cors, keep_alive)
        conn.hold(self.poll, now + self.host.settings.longpoll_hold)

    def handle_post(self, conn: Any, request: Request, cors: list[tuple[str, str]], body: bytes) -> None:
        """Messages (and perhaps the close) posted by the client, delivered in order, once."""
        items = longpoll.parse_items(body, self.host.settings.max_message_size)
        self.idle_since = self.host.loop.now
        session = self.session
        try:
            events = longpoll.receive_items(self.proto, items, self.close_received)
        except SequenceGap as exc:
            body_out = json.dumps(
                {"error": exc.reason, "status": 409, "ack": self.proto.received_seq}
            ).encode()
            self.manager.respond_json(conn, 409, body_out, cors, request.keep_alive)
            return
        closed = False
        for event in events:
            if event[0] == EV_CLOSE:
                self.close_received = True
                self._close_received(event[1], event[2])
                closed = True
            elif session.state == OPEN:
                session._deliver_message(event[1])
        answer = {"ack": self.proto.received_seq}
        if closed or self.close_received:
            answer["closed"] = True
        keep_alive = request.keep_alive and not self.host.stopping
        self.manager.respond_json(
            conn, 200, json.dumps(answer, separators=(",", ":")).encode(), cors, keep_alive
        )

    def _close_received(self, code: int, reason: str) -> None:
        session = self.session
        if session.state == CLOSING:
            # The client's answer to our close: the handshake is complete.
            self._release(session.close_code or code, session.close_reason)
        elif session.state != CLOSED:
            echo = None if code == CloseCode.NO_STATUS_RCVD else code
            self.proto.push_close(echo, reason)
            self._release(code, reason)
        # Kept a little: a retry of this post (its answer lost) is answered "closed", not 404.
        self._linger()
        self._schedule_flush()  # a held poll gets the echo

    def _close_confirmed(self) -> None:
        """A poll acknowledged our close item: the client has seen it; nothing is left to do."""
        session = self.session
        if session.state == CLOSING:
            self._release(session.close_code or CloseCode.NORMAL_CLOSURE, session.close_reason)
        self._live_end()
        self._drop()

    def _release(self, code: int, reason: str) -> None:
        """This carrier is done with the session: it closes (or, on 1006, is suspended)."""
        self._live_end()
        if self.session.carrier is self:
            self.session.transport_closed(self, code, reason)

    def _live_end(self) -> None:
        if self._live:
            self._live = False
            self.manager.live -= 1

    def _linger(self) -> None:
        """Keep a closed session a little for the client to fetch the close item."""
        if not self.linger_until:
            self.linger_until = self.host.loop.now + self.host.settings.close_timeout

    # -- time --------------------------------------------------------------------

    def check_timers(self, now: float, expire: float) -> None:
        """Expire a session nobody polls; drop a closed one once its close had time to be seen."""
        if self.linger_until and now >= self.linger_until:
            if self.session.state == CLOSING and self.session.carrier is self:
                log.info("%s: close not confirmed within %.1fs", self, self.host.settings.close_timeout)
                self._release(CloseCode.ABNORMAL_CLOSURE, "close timeout")
            self._live_end()
            self._drop()
        elif self.poll is None and now - self.idle_since >= expire:
            log.info("%s: no poll for %.1fs; session expired", self, expire)
            self._release(CloseCode.ABNORMAL_CLOSURE, "session expired")
            self._drop()

    def _drop(self) -> None:
        if self.manager.sessions.get(self.id) is self:
            del self.manager.sessions[self.id]
        if self.poll is not None:
            self._answer_poll()

    def __repr__(self) -> str:
        return f"<LongPollSession {self.id[:8]} {format_address(self.session.request.remote_address)}>"


class HeldPoll:
    """A poll request waiting on its HTTP connection for messages or the hold time."""

    __slots__ = ("session", "conn", "cors", "keep_alive")

    def __init__(self, session: LongPollSession, conn: Any, cors: list, keep_alive: bool) -> None:
        self.session = session
        self.conn = conn
        self.cors = cors
        self.keep_alive = keep_alive

    def respond(self, body: bytes) -> None:
        keep_alive = self.keep_alive and not self.session.host.stopping
        self.session.manager.respond_json(self.conn, 200, body, self.cors, keep_alive)

    def hold_expired(self) -> None:
        """The hold time passed with nothing to send: answer with an empty batch."""
        if self.session.poll is self:
            self.session._answer_poll()
        else:  # pragma: no cover - a replaced poll is answered when replaced
            self.respond(longpoll.encode_batch(self.session.proto.received_seq, []))

    def hold_lost(self) -> None:
        """The client closed the poll's connection."""
        session = self.session
        if session.poll is self:
            session.poll = None
            session.idle_since = session.host.loop.now


class LongPolling:
    """The ``/lp/`` request handler and the table of sessions."""

    def __init__(self, host: TransportHost) -> None:
        self.host = host
        #: Every session by id, the closed ones kept for ``close_timeout`` included.
        self.sessions: dict[str, LongPollSession] = {}
        #: Sessions not closed yet: what --longpoll-max-sessions counts.
        self.live = 0
        self._timer = host.loop.call_every(SWEEP_INTERVAL, self._sweep)

    @property
    def settings(self) -> Any:
        return self.host.settings  # replaced by a reload

    def install(self, router: Any) -> None:
        router.prefixes[PREFIX] = self.handle

    # -- dispatch ----------------------------------------------------------------

    def handle(self, conn: Any, request: Request) -> None:
        """Route one request under ``/lp/``: preflight, open, poll or post."""
        allowed = self.cors_headers(request)
        if request.method == "OPTIONS":
            self._preflight(conn, request, allowed)
            return
        cors = allowed or []  # a refused origin is answered 403 just below
        parts = request.path[len(PREFIX) :].split("/", 1)
        try:
            if parts[0] == OPEN_PATH or request_origin(request.headers) is not None:
                # The Origin policy (403), for every request that names an origin. Polls and
                # posts without one are let through: their session id was obtained by an open
                # that passed the policy, and browsers omit Origin on same-origin GETs.
                self.host.check_origin(request)
            if parts[0] == OPEN_PATH:
                self._require(request, "POST")
                app_path = "/" + parts[1] if len(parts) > 1 else "/"
                self._read_body(
                    conn, request, cors, lambda body: self._open(conn, request, cors, app_path, body)
                )
                return
            session = self.sessions.get(parts[0])
            action = parts[1] if len(parts) > 1 else ""
            if action not in ("poll", "send"):
                raise HandshakeError("no such long-polling resource", 404)
            if session is None:
                raise HandshakeError("unknown session", 404)
            if action == "poll":
                self._require(request, "GET")
                session.handle_poll(conn, request, cors)
            else:
                self._require(request, "POST")
                self._read_body(
                    conn, request, cors, lambda body: session.handle_post(conn, request, cors, body)
                )
        except ProtocolError as exc:
            self.error(conn, request, exc, cors)

    def _read_body(self, conn: Any, request: Request, cors: list, then: Any) -> None:
        """Read the body (411/413 close the connection), then run ``then(body)`` with errors as JSON."""

        def body_read(body: bytes) -> None:
            try:
                then(body)
            except ProtocolError as exc:
                self.error(conn, request, exc, cors)

        try:
            conn.read_body(request, self.settings.longpoll_max_body, body_read)
        except ProtocolError as exc:
            self.error(conn, request, exc, cors, keep_alive=False)

    @staticmethod
    def _require(request: Request, method: str) -> None:
        if request.method != method:
            raise HandshakeError("method not allowed", 405, [("Allow", f"{method}, OPTIONS")])

    # -- opening -----------------------------------------------------------------

    def _open(self, conn: Any, request: Request, cors: list, app_path: str, body: bytes) -> None:
        offered = _parse_open_body(body)
        app_request, session_param = without_session_param(dataclasses.replace(request, path=app_path))
        resume = None if session_param is None else parse_session_param(session_param)
        sessions = self.host.sessions
        user = self.host.authenticate(app_request)  # on_connect: a Reject is an HTTP error here
        extra: dict[str, Any] = {}
        if resume is not None:
            session = sessions.find(resume)
            if session is None:
                raise HandshakeError(NOT_RECOVERED_REASON, 410)
            carrier = LongPollSession(self, session)
            session.attach(carrier, resume.ack)
            self.sessions[session.id] = carrier
            session.resumed()
        else:
            if self.live >= self.settings.longpoll_max_sessions:
                log.warning("refusing a long-polling session: %d sessions open", self.live)
                raise HandshakeError("too many sessions", 503, [("Retry-After", "5")])
            subprotocol = select_subprotocol(self.host.app, offered, app_request)
            resumable = session_param is not None
            max_bytes = None if resumable else self.settings.longpoll_max_queue
            session = sessions.create(app_request, subprotocol, resumable=resumable, max_bytes=max_bytes)
            session.user = user
            carrier = LongPollSession(self, session)
            session.carrier = carrier
            session.last_protocol = carrier.protocol
            self.sessions[session.id] = carrier
            session._deliver_open()
        if session_param is not None:
            extra = {"token": session.token, "window": self.settings.resume_window}
        body_out = carrier.response(
            session=session.id,
            protocol=session.subprotocol or "",
            hold=self.settings.longpoll_hold,
            expire=self.settings.longpoll_expire,
            **extra,
        )
        self.respond_json(conn, 200, body_out, cors, request.keep_alive and not self.host.stopping)

    # -- CORS --------------------------------------------------------------------

    def cors_headers(self, request: Request) -> list[tuple[str, str]] | None:
        """CORS headers for a response, following the server's Origin policy.

        None when the origin is refused. An origin the policy allows may read
        the responses from another origin; with credentials (cookies) only when
        ``--allowed-origins`` names it, not when the policy allows every origin.
        """
        origin = request.headers.get("Origin")
        if origin is None or _same_origin(origin, request):
            return []
        policy = self.host.origin_policy
        if policy.check(request_origin(request.headers)) is not None:
            return None
        headers = [("Access-Control-Allow-Origin", origin), ("Vary", "Origin")]
        if not policy.allow_all:
            headers.insert(1, ("Access-Control-Allow-Credentials", "true"))
        return headers

    def _preflight(self, conn: Any, request: Request, cors: list | None) -> None:
        if cors is None:
            self._refuse_origin(conn, request)
            return
        headers = [
            *(h for h in cors if h[0] != "Vary"),
            ("Access-Control-Allow-Methods", "GET, POST, OPTIONS"),
            ("Access-Control-Allow-Headers", "Content-Type"),
            ("Access-Control-Max-Age", _PREFLIGHT_MAX_AGE),
            ("Allow", "GET, POST, OPTIONS"),
        ]
        if cors:
            headers.append(("Vary", "Origin, Access-Control-Request-Method, Access-Control-Request-Headers"))
        self.respond(conn, 204, b"", headers, request.keep_alive and not self.host.stopping)

    def _refuse_origin(self, conn: Any, request: Request) -> None:
        log.info(
            "%s: long-polling refused for origin %r",
            format_address(request.remote_address),
            request.headers.get("Origin"),
        )
        self.error(conn, request, HandshakeError("origin not allowed", 403), [])

    # -- responses ---------------------------------------------------------------

    def respond_json(self, conn: Any, status: int, body: bytes, cors: list, keep_alive: bool) -> None:
        headers = [("Content-Type", "application/json"), ("Cache-Control", "no-store"), *cors]
        self.respond(conn, status, body, headers, keep_alive)

    @staticmethod
    def respond(
        conn: Any, status: int, body: bytes, headers: list, keep_alive: bool, phrase: str | None = None
    ) -> None:
        headers = [*headers, ("Connection", "keep-alive" if keep_alive else "close")]
        conn.respond(build_response(status, headers, body, reason=phrase), keep_alive=keep_alive)

    def error(
        self, conn: Any, request: Request, exc: ProtocolError, cors: list, keep_alive: bool = True
    ) -> None:
        """A JSON error the client understands: ``{"error": "...", "status": N}``."""
        status = exc.status
        log.info(
            "%s: %s %s: %d %s",
            format_address(request.remote_address),
            request.method,
            request.path[:64],
            status,
            exc.reason,
        )
        headers = [("Content-Type", "application/json"), ("Cache-Control", "no-store"), *cors]
        headers.extend(getattr(exc, "headers", ()))
        body = json.dumps({"error": exc.reason, "status": status}).encode()
        keep_alive = keep_alive and request.keep_alive and not self.host.stopping
        self.respond(conn, status, body, headers, keep_alive, getattr(exc, "phrase", None))

    def stats(self) -> dict[str, int]:
        """Sessions and held polls, for ``/status``."""
        held = sum(1 for s in self.sessions.values() if s.poll is not None)
        return {"sessions": self.live, "closed_lingering": len(self.sessions) - self.live, "held_polls": held}

    # -- time --------------------------------------------------------------------

    def _sweep(self) -> None:
        now = self.host.loop.now
        expire = self.settings.longpoll_expire
        for session in list(self.sessions.values()):
            session.check_timers(now, expire)

    def close(self) -> None:
        """With the server: the sessions themselves end with the server's SessionManager."""
        self._timer.cancel()
        self.sessions.clear()


def _parse_open_body(body: bytes) -> list[str]:
    """Subprotocols offered in an open request's optional body ``{"protocols": [...]}``."""
    if not body.strip():
        return []
    doc = longpoll.parse_json_object(body)
    offered = doc.get("protocols", [])
    if not isinstance(offered, list) or not all(isinstance(p, str) and is_token(p) for p in offered):
        raise ProtocolError('"protocols" must be a list of tokens')
    return offered


def _same_origin(origin: str, request: Request) -> bool:
    """Whether ``Origin`` names the host the request was sent to: no CORS headers are needed.

    Only that; whether the origin may connect is the Origin policy's question.
    """
    parsed = parse_origin(origin)
    host_header = request.headers.get("Host")
    if parsed is None or not host_header:
        return False
    scheme, host, port = parsed
    target = parse_origin(f"{scheme}://{host_header.strip()}")
    return target == parsed
