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
import secrets
from collections.abc import Hashable
from typing import Any

from ..net.sockets import format_address
from ..proto import longpoll
from ..proto.codes import CLOSED, CLOSING, CONNECTING, OPEN, CloseCode, ConnState
from ..proto.errors import ConnectionClosedError, HandshakeError, ProtocolError
from ..proto.http11 import Request, build_response, is_token
from ..proto.longpoll import EV_CLOSE, QueueFull, SessionProtocol
from ..proto.origin import parse_origin, request_origin
from .appconnection import APP_STATE_SLOTS, AppConnection
from .host import TransportHost
from .upgrade import select_subprotocol

log = logging.getLogger("wsdaemon.longpoll")

PREFIX = "/lp/"
OPEN_PATH = "open"
SWEEP_INTERVAL = 0.5
_PREFLIGHT_MAX_AGE = "600"


class LongPollSession(AppConnection):
    """One long-polling client: a numbered outbound queue, at most one held poll."""

    __slots__ = (
        "host",
        *APP_STATE_SLOTS,
        "id",
        "manager",
        "proto",
        "poll",
        "idle_since",
        "linger_until",
        "_flush_scheduled",
        "dropped",
    )

    protocol = "long-polling"
    #: Connections with the same wire format share one encoding of a broadcast or publish.
    wire_format = "long-polling"

    def __init__(self, manager: LongPolling, session_id: str, request: Request, subprotocol: str | None):
        self.manager = manager
        self.host = manager.host
        self._init_app_state(request, subprotocol)
        self.id = session_id
        self.proto = SessionProtocol(self.host.settings.longpoll_max_queue)
        #: The held poll, if any.
        self.poll: HeldPoll | None = None
        self.idle_since = self.host.loop.now
        #: After our close (or the client's), when the session is dropped for good.
        self.linger_until = 0.0
        self._flush_scheduled = False
        #: Volatile messages dropped because the session was backlogged.
        self.dropped = 0

    # -- the application's API ---------------------------------------------------

    @classmethod
    def encode_message(cls, message: str | bytes) -> bytes:
        return longpoll.encode_payload(message)

    def send_encoded(self, encoded: bytes) -> None:
        if self.state == OPEN:
            self._push(encoded)

    def send_encoded_keyed(self, encoded: bytes, key: Hashable) -> None:
        if self.state == OPEN:
            self._push(encoded, key)

    def send(self, message: str | bytes, *, key: Hashable | None = None, volatile: bool = False) -> None:
        if key is not None or volatile:
            return self._send_flagged(message, key, volatile)
        if self.state != OPEN:
            raise ConnectionClosedError(f"session is {ConnState(self.state).label}")
        self._push(longpoll.encode_payload(message))

    @property
    def backlogged(self) -> bool:
        """True while messages wait that no poll response has carried yet."""
        return self.proto.has_unsent

    @property
    def replaced(self) -> int:
        """Keyed messages replaced by a newer one with the same key before a poll carried them."""
        return self.proto.replaced

    @property
    def buffered_amount(self) -> int:
        """Bytes queued for the client and not yet acknowledged by a poll."""
        return self.proto.queued_bytes

    def close(self, code: int = CloseCode.NORMAL_CLOSURE, reason: str = "") -> None:
        """Queue a close item after the queued messages; ``on_close`` follows the client's echo."""
        if self.state == CLOSING and self.host.stopping:
            self._deliver_close(self.close_code or code, self.close_reason)
            return
        if self.state not in (OPEN, CONNECTING):
            return
        self.proto.push_close(code, reason)
        self.state = CLOSING
        self.close_code = code
        self.close_reason = reason
        self.linger_until = self.host.loop.now + self.host.settings.close_timeout
        if self.host.stopping:
            # No new request can reach us: the close item goes out with the held poll, if any.
            self._deliver_close(code, reason)
        self._schedule_flush()

    def fail(self, code: int, reason: str) -> None:
        """Close because of an error: the application sees ``on_close`` now, the client next poll."""
        if self.state == CLOSED:
            return
        log.info("failing %s: %d %s", self, code, reason)
        self.proto.push_close(code, reason)
        self._linger()
        self._deliver_close(code, reason)
        self._schedule_flush()

    # -- outbound ----------------------------------------------------------------

    def _push(self, payload: bytes, key: Hashable | None = None) -> None:
        try:
            if key is None:
                self.proto.push(payload)
            else:
                self.proto.push_keyed(payload, key)
        except QueueFull:
            self._overflow()
            return
        self._schedule_flush()

    def _overflow(self) -> None:
        log.warning(
            "%s: slow consumer, %d bytes unacknowledged; closing with 1008", self, self.proto.queued_bytes
        )
        self.proto.push_close(CloseCode.POLICY_VIOLATION, "slow consumer", drop_queue=True)
        self._linger()
        self._deliver_close(CloseCode.POLICY_VIOLATION, "slow consumer")
        self._schedule_flush()

    def _schedule_flush(self) -> None:
        # Messages queued in one loop iteration leave together in one poll response.
        if self.poll is not None and not self._flush_scheduled:
            self._flush_scheduled = True
            self.host.loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        if self.poll is not None and self.proto.has_pending:
            self._answer_poll()

    def _answer_poll(self) -> None:
        poll = self.poll
        if poll is None:
            return
        self.poll = None
        self.idle_since = self.host.loop.now
        poll.respond(self.proto.response())

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
        if self.proto.has_pending or self.state == CLOSED:
            self.manager.respond_json(conn, 200, self.proto.response(), cors, keep_alive)
            return
        self.poll = HeldPoll(self, conn, cors, keep_alive)
        conn.hold(self.poll, now + self.host.settings.longpoll_hold)

    def handle_post(self, conn: Any, request: Request, cors: list[tuple[str, str]], body: bytes) -> None:
        """Messages (and perhaps the close) posted by the client, delivered in order, once."""
        items = longpoll.parse_items(body, self.host.settings.max_message_size)
        self.idle_since = self.host.loop.now
        try:
            events = self.proto.receive(items)
        except longpoll.SequenceGap as exc:
            body_out = json.dumps(
                {"error": exc.reason, "status": 409, "ack": self.proto.received_seq}
            ).encode()
            self.manager.respond_json(conn, 409, body_out, cors, request.keep_alive)
            return
        closed = False
        for event in events:
            if event[0] == EV_CLOSE:
                self._close_received(event[1], event[2])
                closed = True
            elif self.state == OPEN:
                self._deliver_message(event[1])
        answer = {"ack": self.proto.received_seq}
        if closed or self.proto.close_received:
            answer["closed"] = True
        keep_alive = request.keep_alive and not self.host.stopping
        self.manager.respond_json(
            conn, 200, json.dumps(answer, separators=(",", ":")).encode(), cors, keep_alive
        )

    def _close_received(self, code: int, reason: str) -> None:
        if self.state == CLOSING:
            # The client's answer to our close: the handshake is complete.
            self._deliver_close(self.close_code or code, self.close_reason)
        elif self.state != CLOSED:
            echo = None if code == CloseCode.NO_STATUS_RCVD else code
            self.proto.push_close(echo, reason)
            self._deliver_close(code, reason)
        # Kept a little: a retry of this post (its answer lost) is answered "closed", not 404.
        self._linger()
        self._schedule_flush()  # a held poll gets the echo

    def _close_confirmed(self) -> None:
        """A poll acknowledged our close item: the client has seen it; nothing is left to do."""
        if self.state == CLOSING:
            self._deliver_close(self.close_code or CloseCode.NORMAL_CLOSURE, self.close_reason)
        self._drop()

    def _linger(self) -> None:
        """Keep a closed session a little for the client to fetch the close item."""
        if not self.linger_until:
            self.linger_until = self.host.loop.now + self.host.settings.close_timeout

    # -- time --------------------------------------------------------------------

    def check_timers(self, now: float, expire: float) -> None:
        """Expire a session nobody polls; drop a closed one once its close had time to be seen."""
        if self.linger_until and now >= self.linger_until:
            if self.state == CLOSING:
                log.info("%s: close not confirmed within %.1fs", self, self.host.settings.close_timeout)
                self._deliver_close(CloseCode.ABNORMAL_CLOSURE, "close timeout")
            self._drop()
        elif self.poll is None and now - self.idle_since >= expire:
            log.info("%s: no poll for %.1fs; session expired", self, expire)
            self._deliver_close(CloseCode.ABNORMAL_CLOSURE, "session expired")
            self._drop()

    def _deliver_close(self, code: int, reason: str) -> None:
        if self.state != CLOSED:
            self.manager.live -= 1
        super()._deliver_close(code, reason)

    def _drop(self) -> None:
        self.manager.sessions.pop(self.id, None)
        if self.poll is not None:
            self._answer_poll()

    def __repr__(self) -> str:
        return f"<LongPollSession {self.id[:8]} {format_address(self.request.remote_address)}>"


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
        if self.live >= self.settings.longpoll_max_sessions:
            log.warning("refusing a long-polling session: %d sessions open", self.live)
            raise HandshakeError("too many sessions", 503, [("Retry-After", "5")])
        app_request = dataclasses.replace(request, path=app_path)
        user = self.host.authenticate(app_request)
        subprotocol = select_subprotocol(self.host.app, offered, app_request)
        session_id = secrets.token_urlsafe(18)
        session = LongPollSession(self, session_id, app_request, subprotocol)
        session.user = user
        self.sessions[session_id] = session
        self.live += 1
        session._deliver_open()
        body_out = session.proto.response(
            session=session_id,
            protocol=subprotocol or "",
            hold=self.settings.longpoll_hold,
            expire=self.settings.longpoll_expire,
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
        """With the server: sessions still there (no shutdown ran) see their end, once."""
        self._timer.cancel()
        for session in list(self.sessions.values()):
            session._deliver_close(CloseCode.ABNORMAL_CLOSURE, "server stopped")
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
