"""A resumable session: the ``conn`` the application keeps while transports come and go.

A client of ours (``wsdaemon.js``) asks for a session; the :class:`Session` is
then what the application sees (``send``, ``close``, ``data``, ``request``...)
and the WebSocket or long-polling connection under it is only its *carrier*.
When the carrier drops without a close (1006) the session is suspended, not
closed: what the application sends is kept (bounded by ``--resume-buffer``) and
a new carrier that presents the session id, its token and the last number it
received gets every unacknowledged message replayed, and ``on_resume`` runs.
Past ``--resume-window`` the session closes with 1006. See ``docs/sessions.md``.
"""

from __future__ import annotations

import dataclasses
import logging
import secrets
import time
import urllib.parse
from collections import deque
from collections.abc import Hashable
from typing import Any, Protocol

from ..proto.codes import CLOSED, CLOSING, CONNECTING, OPEN, CloseCode, ConnState
from ..proto.errors import ConnectionClosedError, ProtocolError
from ..proto.http11 import QueryParams, Request
from ..proto.rfc6455 import OP_TEXT
from ..proto.session import (
    SESSION_PARAM,
    BufferFull,
    ResumeRequest,
    SessionState,
    decode_control,
)
from .appconnection import APP_STATE_SLOTS, AppConnection

log = logging.getLogger("wsdaemon.session")

#: The server acknowledges the client's messages batched: after ACK_EVERY of them, or this many seconds
#: after the first one not yet acknowledged. Acks only let the client drop what it keeps for a resend
#: (the hello of a resume says what the server has), so a second is soon enough and costs a send
#: per session per second, not ten.
ACK_DELAY = 1.0
ACK_EVERY = 64


class Carrier(Protocol):
    """A transport carrying a session: the WebSocket or long-polling connection under it."""

    protocol: str

    def carry(self, seq: int, message: Any) -> bool:
        """Send message ``seq`` (``str``, ``bytes`` or the final ``Close``); True when it is on its way now."""

    def carry_many(self, start: int, messages: list[Any]) -> bool:
        """Send messages ``start``, ``start + 1``, ... (``str`` or ``bytes``); True when on their way now."""

    def carry_ack(self, seq: int) -> None:
        """Tell the client every message up to ``seq`` arrived (a no-op where replies carry it)."""

    def detach(self) -> None:
        """The session moved to another carrier: end this transport without a word to the session."""

    @property
    def backlogged(self) -> bool:
        """True when a volatile message should be dropped rather than queued."""


def _payload(message: Any) -> bytes:
    """What ``send`` makes of a message that is not a ``str``: a bytes-like one as ``bytes``."""
    if not isinstance(message, (bytes, bytearray, memoryview)):
        raise TypeError(f"send() takes str or bytes, not {type(message).__name__}")
    return bytes(message)


class Session(AppConnection):
    """One client's session; outlives its transports within ``--resume-window``."""

    __slots__ = (
        "host",
        *APP_STATE_SLOTS,
        "manager",
        "id",
        "token",
        "proto",
        "carrier",
        "resumable",
        "last_protocol",
        "_expiry",
        "_ack_due_at",
        "_acked_to_client",
        "_carry_due",
        "dropped",
    )

    #: The application's message, numbered per session: a publish encodes nothing for sessions.
    wire_format = "session"

    def __init__(
        self,
        manager: SessionManager,
        request: Request,
        subprotocol: str | None,
        resumable: bool,
        max_bytes: int | None = None,
    ):
        self.manager = manager
        self.host = manager.host
        self._init_app_state(request, subprotocol)
        self.id = manager.id_prefix + secrets.token_urlsafe(18)
        self.token = secrets.token_urlsafe(18)
        self.proto = SessionState(self.host.settings.resume_buffer if max_bytes is None else max_bytes)
        self.carrier: Any = None
        #: False for a raw long-polling client that did not ask for a session: a lost carrier ends it.
        self.resumable = resumable
        self.last_protocol = "unknown"
        self._expiry: Any = None
        #: When the pending ack is due (``time.monotonic()``; 0.0: none pending), see SessionManager.ack_later.
        self._ack_due_at = 0.0
        self._acked_to_client = 0
        #: True while messages sent this loop turn wait to go to the carrier together (see uncork).
        self._carry_due = False
        #: Volatile messages dropped because the session was backlogged or suspended.
        self.dropped = 0

    @property
    def protocol(self) -> str:  # type: ignore[override]
        """The transport carrying the session now (the last one while suspended)."""
        carrier = self.carrier
        return carrier.protocol if carrier is not None else self.last_protocol

    @property
    def suspended(self) -> bool:
        """True while no transport carries the session (it waits for a resume)."""
        return self.carrier is None and self.state in (OPEN, CLOSING)

    # -- the application's API ---------------------------------------------------

    def send(self, message: str | bytes, *, key: Hashable | None = None, volatile: bool = False) -> None:
        """Number ``message`` and send it, or keep it for the resume while suspended.

        ``key``: an unsent message of the same key is replaced in place.
        ``volatile``: dropped rather than queued while suspended or backlogged.
        """
        if self.state != OPEN:
            raise ConnectionClosedError(f"session is {ConnState(self.state).label}")
        proto = self.proto
        if key is None and not volatile:
            try:
                kept = proto.push_plain(message)  # a str or bytes; TypeError for anything else
            except TypeError:
                kept = proto.push_plain(_payload(message))
            if not kept:
                return self._overflow()
        else:
            if type(message) is not str:
                message = _payload(message)
            if volatile and self.backlogged:
                self.dropped += 1
                return
            try:
                proto.push(message, key)
            except BufferFull:
                return self._overflow()
        if not self._carry_due and self.carrier is not None:
            self._carry_later()

    def _carry_later(self) -> None:
        """The carrier gets this turn's messages together, at the end of the read or of the turn."""
        self._carry_due = True
        loop = self.host.loop
        if loop.running:
            loop.corked.append(self)
        else:
            self.uncork()

    def uncork(self) -> None:
        """Hand the messages sent since the last call to the carrier in one piece (one frame write)."""
        if not self._carry_due:
            return
        self._carry_due = False
        carrier = self.carrier
        proto = self.proto
        sent = proto.sent_seq
        start = proto.carried_seq + 1
        if carrier is None or sent < start or proto.close_seq:
            return
        if carrier.carry_many(start, proto.entries[start - proto.first_seq :]):
            proto.carried_seq = sent  # what proto.carried(sent) does: sent is past carried_seq

    def send_encoded(self, encoded: Any) -> None:
        if self.state == OPEN:
            self.send(encoded)

    def send_encoded_keyed(self, encoded: Any, key: Hashable) -> None:
        if self.state == OPEN:
            self.send(encoded, key=key)

    @property
    def backlogged(self) -> bool:
        """True while suspended or while the carrier has not sent what it was given."""
        carrier = self.carrier
        return carrier is None or carrier.backlogged

    @property
    def replaced(self) -> int:
        """Keyed messages replaced in place by a newer one before any transport carried them."""
        return self.proto.replaced

    @property
    def buffered_amount(self) -> int:
        """Bytes sent or kept for the client and not acknowledged by it yet."""
        return self.proto.bytes

    def close(self, code: int = CloseCode.NORMAL_CLOSURE, reason: str = "") -> None:
        """Close after what is queued; ``on_close`` follows the client's answer (at once if suspended)."""
        if self.state == CLOSING and self.host.stopping:
            self._finish(self.close_code or code, self.close_reason)
            return
        if self.state not in (OPEN, CONNECTING):
            return
        self.uncork()  # what was sent before the close leaves before it
        self.state = CLOSING
        self.close_code = code
        self.close_reason = reason
        seq = self.proto.push_close(code, reason)
        carrier = self.carrier
        if carrier is None:
            self._finish(code, reason)
        elif carrier.carry(seq, self.proto.close_message):
            self.proto.carried(seq)

    def fail(self, code: int, reason: str) -> None:
        """End now (callback error, overflow): the application sees ``on_close`` at once."""
        if self.state == CLOSED:
            return
        log.info("failing %s: %d %s", self, code, reason)
        seq = self.proto.push_close(code, reason, drop=True)
        carrier = self.carrier
        self._finish(code, reason)
        if carrier is not None:
            carrier.carry(seq, self.proto.close_message)  # the close goes out; the carrier ends itself

    def _overflow(self) -> None:
        what = "resume buffer full" if self.resumable else "slow consumer"
        log.warning("%s: %s, %d bytes unacknowledged; closing with 1008", self, what, self.proto.bytes)
        self.fail(CloseCode.POLICY_VIOLATION, what)

    # -- the carrier's side --------------------------------------------------------

    def attach(self, carrier: Any, ack: int) -> list[tuple[int, Any]]:
        """``carrier`` takes over after a resume: returns the (number, message) it must replay, in order.

        The caller sends its hello, then those, then calls :meth:`resumed`.
        """
        self.proto.acknowledge(ack)  # ProtocolError if the client claims more than was sent
        old = self.carrier
        if old is not None:
            self.carrier = None
            old.detach()
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None
        self.carrier = carrier
        self.last_protocol = carrier.protocol
        self._acked_to_client = self.proto.received_seq  # the hello carries it
        return self.proto.unacknowledged()

    def carrier_drained(self, carrier: Any) -> None:
        """The carrier can take messages again: what waited leaves, in order."""
        proto = self.proto
        if carrier is not self.carrier or not proto.uncarried:
            return
        for seq, message in proto.uncarried_messages():
            if not carrier.carry(seq, message):
                break
            proto.carried(seq)

    def resumed(self) -> None:
        """Replay done: the application hears of it."""
        log.debug("resumed %s over %s", self, self.protocol)
        try:
            self.host.app.handle_resume(self)
        except Exception:
            self._callback_failed("on_resume")

    def message_received(self, seq: int, message: str | bytes) -> None:
        """A numbered message of the client: delivered once, in order; the ack follows batched."""
        proto = self.proto
        if seq != proto.received_seq + 1 and not proto.receive(seq):
            return  # a resend of what was delivered (a gap raised SequenceGap)
        proto.received_seq = seq
        if self.state == OPEN:
            try:
                self.host.app.message_handler(self, message)
            except Exception:
                self._callback_failed("on_message")
        if seq - self._acked_to_client >= ACK_EVERY:
            self._send_ack()
        elif not self._ack_due_at:
            self.manager.ack_later(self)

    def frames_carried(self, carrier: Any, events: list[tuple[int, Any]]) -> None:
        """The WebSocket carrier's parsed frames of one read, in order: messages are numbered by their
        place (``proto.deliver``, in C), session controls handled here, pings and closes by
        ``carrier.control_event``."""
        proto = self.proto
        handle = self.host.app.message_handler
        before = proto.received_seq
        # The replies of this read leave together below (one frame write): a send needs no cork of its own.
        self._carry_due = True
        try:
            index = proto.deliver(events, 0, self, handle, OPEN)
            while index < len(events):  # an event that is not a message stopped the delivery
                kind, value = events[index]
                if kind == OP_TEXT:
                    self._control_received(carrier, value)  # a bad control fails the carrier and the session
                elif carrier.control_event(kind, value):
                    break
                index = proto.deliver(events, index + 1, self, handle, OPEN)
        finally:
            self.uncork()  # the replies of this read leave with the read's other writes
        seq = proto.received_seq
        if self.carrier is not carrier or seq == before:
            return
        if seq - self._acked_to_client >= ACK_EVERY:
            self._send_ack()
        elif not self._ack_due_at:
            self.manager.ack_later(self)

    def _control_received(self, carrier: Any, text: str) -> None:
        try:
            kind, seq = decode_control(text)
            if kind == "ack":
                self.proto.acknowledge(seq)
        except ProtocolError as exc:
            carrier.fail(CloseCode.PROTOCOL_ERROR, exc.reason)

    def ack_received(self, ack: int) -> bool:
        """The client acknowledged up to ``ack``; True when that confirms our close."""
        return self.proto.acknowledge(ack)

    def _send_ack(self) -> None:
        carrier = self.carrier
        if carrier is not None and self.proto.received_seq > self._acked_to_client:
            self._acked_to_client = self.proto.received_seq
            carrier.carry_ack(self._acked_to_client)

    def transport_closed(self, carrier: Any, code: int, reason: str) -> None:
        """The carrier ended: suspend on 1006 (a drop), close the session on anything else."""
        if carrier is not self.carrier:
            return  # detached already
        self.carrier = None
        self.last_protocol = carrier.protocol
        if self.state == CLOSED:
            self.manager.forget(self)
        elif self.state == CLOSING:
            self._finish(self.close_code or code, self.close_reason)
        elif code == CloseCode.ABNORMAL_CLOSURE and self.resumable and not self.host.stopping:
            self._suspend(reason)
        else:
            self._finish(code, reason)

    def _suspend(self, why: str) -> None:
        window = self.host.settings.resume_window
        log.debug("%s suspended (%s); kept %.1f s for a resume", self, why, window)
        self._ack_due_at = 0.0  # the pending ack, if any, is dropped
        self._acked_to_client = 0  # a resume's hello carries it again
        self._expiry = self.host.loop.call_later(window, self._expired, why)

    def _expired(self, why: str) -> None:
        self._expiry = None
        log.info("%s not resumed within %.1f s (%s)", self, self.host.settings.resume_window, why)
        self._finish(CloseCode.ABNORMAL_CLOSURE, "session not resumed")

    def _finish(self, code: int, reason: str) -> None:
        """``on_close`` once, and the session leaves the table (a later resume is not recovered)."""
        if self._expiry is not None:
            self._expiry.cancel()
        self._expiry = None
        self._ack_due_at = 0.0
        self.manager.forget(self)
        self._deliver_close(code, reason)

    # -- the server's periodic checks go to the carrier ----------------------------

    def check_keepalive(self, now: float, interval: float, timeout: float) -> None:
        if self.carrier is not None:
            self.carrier.check_keepalive(now, interval, timeout)

    def check_idle(self, now: float, limit: float) -> None:
        if self.carrier is not None:
            self.carrier.check_idle(now, limit)

    def __repr__(self) -> str:
        return f"<Session {self.id[:8]} {self.protocol}{' suspended' if self.suspended else ''}>"


class SessionManager:
    """The table of sessions by id: creation, lookup for a resume, the end of the server."""

    def __init__(self, host: Any) -> None:
        self.host = host
        self.sessions: dict[str, Session] = {}
        #: Begins every session id: with ``--processes``, the child's slot (transports/handoff.py).
        self.id_prefix = ""
        #: Resumes that found their session, and those that did not (the client got 4000 / 410).
        self.resumed = 0
        self.not_recovered = 0
        #: (due, session) of the pending acks, in the order asked, so by due time (the delay is one):
        #: one loop timer for the first instead of one per session (see ack_later).
        self._acks: deque[tuple[float, Session]] = deque()
        self._ack_timer: Any = None

    def create(
        self, request: Request, subprotocol: str | None, resumable: bool = True, max_bytes: int | None = None
    ) -> Session:
        """A new session (``on_open`` is the caller's to run); ``max_bytes`` overrides ``--resume-buffer``."""
        session = Session(self, request, subprotocol, resumable, max_bytes)
        self.sessions[session.id] = session
        return session

    def find(self, resume: ResumeRequest) -> Session | None:
        """The session a resume names, if it is still there and the token matches."""
        session = self.sessions.get(resume.session_id)
        if (
            session is None
            or not secrets.compare_digest(session.token, resume.token)
            or session.state not in (OPEN, CLOSING)
            or resume.ack > session.proto.sent_seq
        ):
            self.not_recovered += 1
            return None
        self.resumed += 1
        return session

    def ack_later(self, session: Session) -> None:
        """``session._send_ack()`` in ``ACK_DELAY`` seconds, unless its ``_ack_due_at`` changes meanwhile
        (0.0: dropped): at most that long after a message, what the count did not acknowledge is (an
        ack the count sends does not push it back, so a steady stream costs one ack per delay). What
        a timer per session would do, with one loop timer for all of them."""
        due = session._ack_due_at = time.monotonic() + ACK_DELAY
        self._acks.append((due, session))
        if self._ack_timer is None:
            self._ack_timer = self.host.loop.call_later(ACK_DELAY, self._acks_due)

    def _acks_due(self) -> None:
        """The loop timer of the first pending ack: every ack due by now goes out, in order."""
        self._ack_timer = None
        acks = self._acks
        if not acks:
            return
        limit = max(acks[0][0], time.monotonic())  # the first is due: the timer was set for it
        try:
            while acks and acks[0][0] <= limit:
                due, session = acks.popleft()
                if session._ack_due_at == due:  # not dropped, not asked again since
                    session._ack_due_at = 0.0
                    session._send_ack()
        finally:  # one that failed (logged by the loop) does not hold up the others
            if acks and self._ack_timer is None:
                delay = max(0.0, acks[0][0] - time.monotonic())
                self._ack_timer = self.host.loop.call_later(delay, self._acks_due)

    def forget(self, session: Session) -> None:
        if self.sessions.get(session.id) is session:
            del self.sessions[session.id]

    def stats(self) -> dict[str, int]:
        """Sessions and suspended sessions, for ``/status``."""
        suspended = sum(1 for s in self.sessions.values() if s.suspended)
        return {"sessions": len(self.sessions), "suspended": suspended}

    def close(self) -> None:
        """With the server: sessions still there see their end, once."""
        for session in list(self.sessions.values()):
            session._finish(CloseCode.ABNORMAL_CLOSURE, "server stopped")
        self.sessions.clear()
        self._acks.clear()
        if self._ack_timer is not None:
            self._ack_timer.cancel()
            self._ack_timer = None


def without_session_param(request: Request) -> tuple[Request, str | None]:
    """The request the application sees (our query parameter removed) and the parameter's value."""
    if SESSION_PARAM not in request.query_string:  # every raw client: no parsing, no lookup
        return request, None
    value = request.query.get(SESSION_PARAM)
    if value is None:
        return request, None
    items = [(k, v) for k, v in request.query.multi_items() if k != SESSION_PARAM]
    query_string = urllib.parse.urlencode(items)
    target = request.path + ("?" + query_string if query_string else "")
    clean = dataclasses.replace(request, target=target, query_string=query_string, query=QueryParams(items))
    return clean, value
