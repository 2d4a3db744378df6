"""Resumable sessions without I/O: the envelope codec and the numbered resume buffer.

A session numbers every message in both directions and keeps what the peer has
not acknowledged, so that a new transport (WebSocket or long-polling) can take
over after the old one dropped and nothing is lost or delivered twice. On a
WebSocket the numbers are implicit: the transport is ordered, and its hello
names the first number of each direction, so a message is the application's own
bytes (a text that begins with ``!`` gets one more ``!``) and control messages
are texts that begin with ``!`` and another character (``docs/sessions.md``).
Long-polling carries the same numbers explicitly in its JSON items
(:mod:`wsdaemon.proto.longpoll`).
"""

from __future__ import annotations

import json
from itertools import islice
from typing import Any, NamedTuple

from .accel import speedups
from .errors import ProtocolError
from .rfc6455 import OP_BINARY, OP_TEXT, binary_frame, text_frame

#: The query parameter a client of ours adds to ask for a session: ``new`` or ``ID.TOKEN.ACK``.
SESSION_PARAM = "wsdaemon_session"
NEW = "new"
#: Close code a client gets when the session it wants to resume is gone.
NOT_RECOVERED = 4000
NOT_RECOVERED_REASON = "session not recovered"

CONTROL = "!"
HELLO = "!h"
ACK = "!a"
#: A text message of the application that begins with ``!`` is sent with one more in front.
ESCAPED = "!!"
_DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"
_MAX_SEQ_DIGITS = 12  # base 36: up to 4.7e18, more than any session sends
#: Two base-36 digits for every number below 36**2: with and without a leading zero.
_B36_PAIRS = [a + b for a in _DIGITS for b in _DIGITS]
_B36_SHORT = [pair.lstrip("0") or "0" for pair in _B36_PAIRS]


class BufferFull(Exception):
    """Queuing a message would put the session over its resume buffer limit."""


class SequenceGap(ProtocolError):
    """A message arrived before one the receiver never got (the client must resend from ``ack + 1``)."""

    def __init__(self, expected: int, got: int) -> None:
        super().__init__(f"message {got} before message {expected}", status=409)
        self.expected = expected


class Close(NamedTuple):
    """The close as the last numbered item of a direction (long-polling shows it as an item)."""

    code: int | None
    reason: str


# -- numbers ---------------------------------------------------------------------


def base36(n: int) -> str:
    """``n`` in base 36, lower case: 7 digits reach 78 billion."""
    if n < 1296:
        return _B36_SHORT[n]
    head, low = divmod(n, 1296)
    return (base36(head) if head >= 1296 else _B36_SHORT[head]) + _B36_PAIRS[low]


def parse_base36(text: str) -> int:
    if not text or len(text) > _MAX_SEQ_DIGITS or not text.isalnum() or not text.isascii():
        raise ProtocolError(f"bad sequence number {text[:16]!r}")
    return int(text, 36)


# -- the WebSocket envelope ----------------------------------------------------------


def escape_text(text: str) -> str:
    """An application text as a session sends it: one more ``!`` when it begins with ``!``."""
    return CONTROL + text if text[:1] == CONTROL else text


def _rfc6455_frame_python(message: str | bytes) -> bytes:
    """A numbered message as the RFC 6455 frame a carrier sends: text escaped, binary as it is."""
    if type(message) is str:
        if message[:1] == CONTROL:
            message = CONTROL + message
        return text_frame(message.encode("utf-8"))
    return binary_frame(message)


def _rfc6455_frames_python(messages: list[str | bytes]) -> bytes:
    return b"".join(map(_rfc6455_frame_python, messages))


#: ``rfc6455_frame(message) -> bytes`` and ``rfc6455_frames(messages) -> bytes`` (the frames of a
#: list, joined): what a WebSocket carrier sends, in C when it is built.
rfc6455_frame = speedups.session_frame if speedups is not None else _rfc6455_frame_python
rfc6455_frames = speedups.session_frames if speedups is not None else _rfc6455_frames_python


def encode_hello(session_id: str, token: str, ack: int, next_seq: int, resumed: bool, window: float) -> str:
    """The first text message on a session's transport: who it is and where both numberings stand.

    ``ack``: the last client message the server has (the client's next one on this
    transport is ``ack + 1``); ``next``: the number of the server's next message.
    """
    doc = {
        "session": session_id,
        "token": token,
        "ack": ack,
        "next": next_seq,
        "resumed": resumed,
        "window": window,
    }
    return HELLO + json.dumps(doc, separators=(",", ":"))


def encode_ack(seq: int) -> str:
    """``!a<seq>``: every message up to ``seq`` arrived (sent batched, not per message)."""
    return ACK + base36(seq)


def decode_control(text: str) -> tuple[str | None, int]:
    """A text of the peer that begins with ``!``: ``(None, 0)`` for an escaped message, ``("ack", seq)`` for an ack."""
    if text[:2] == ESCAPED:
        return None, 0
    if text[:2] == ACK:
        return "ack", parse_base36(text[2:])
    raise ProtocolError(f"unknown session control message {text[:8]!r}")


class ResumeRequest(NamedTuple):
    session_id: str
    token: str
    ack: int


def parse_session_param(value: str) -> ResumeRequest | None:
    """``new`` -> None (a new session); ``ID.TOKEN.ACK`` -> a resume; anything else is a 400."""
    if value == NEW:
        return None
    parts = value.split(".")
    if len(parts) != 3 or not parts[0] or not parts[1] or not parts[2].isdigit() or len(parts[2]) > 18:
        raise ProtocolError(f'{SESSION_PARAM} must be "new" or "ID.TOKEN.ACK"')
    return ResumeRequest(parts[0], parts[1], int(parts[2]))


# -- the numbered buffer ---------------------------------------------------------------


class _NumberedBufferPython:
    """The counters and kept messages of :class:`SessionState`: ``_speedups.NumberedBuffer`` in Python.

    ``push_plain`` and ``deliver`` (once per message each, out and in) and ``acknowledge`` (once per
    ack) are the operations in C.
    """

    __slots__ = (
        "max_bytes",
        "entries",
        "first_seq",
        "bytes",
        "sent_seq",
        "acked_seq",
        "carried_seq",
        "received_seq",
        "close_seq",
        "keyed",
        "replaced",
    )

    def __init__(self, max_bytes: int = 0) -> None:
        self.max_bytes = max_bytes
        #: Unacknowledged messages, oldest first; ``entries[i]`` has number ``first_seq + i``.
        self.entries: list[Any] = []
        self.first_seq = 1
        self.bytes = 0
        self.sent_seq = 0
        self.acked_seq = 0
        #: Every number up to this one was handed to a transport: no longer replaceable.
        self.carried_seq = 0
        self.received_seq = 0
        self.close_seq = 0
        #: key -> number of the uncarried message with that key, for keyed pushes since the last unkeyed one.
        self.keyed: dict[Any, int] = {}
        #: Keyed messages replaced in place by a newer one.
        self.replaced = 0

    def push_plain(self, message: str | bytes) -> bool:
        """Number and keep an unkeyed message, a ``str`` or ``bytes`` (exactly: ``TypeError`` for anything
        else); False (nothing kept) when it would pass ``max_bytes``."""
        if type(message) is not str and type(message) is not bytes:
            raise TypeError(f"push_plain takes str or bytes, not {type(message).__name__}")
        if self.keyed:
            self.keyed.clear()
        total = self.bytes + len(message)
        if total > self.max_bytes and self.max_bytes:
            return False
        self.entries.append(message)
        self.sent_seq += 1
        self.bytes = total
        return True

    def acknowledge(self, ack: int) -> bool:
        """Drop messages up to ``ack``; True when that confirms the close.

        A stale ack changes nothing; one beyond the last number sent is a protocol error.
        """
        if ack > self.sent_seq:
            raise ProtocolError(f"ack {ack} for a message never sent (last is {self.sent_seq})")
        if ack > self.acked_seq:
            self.acked_seq = ack
            if ack > self.carried_seq:
                self.carried_seq = ack
            entries = self.entries
            count = min(ack - self.first_seq + 1, len(entries))
            if count > 0:
                self.first_seq += count
                freed = sum(map(len, islice(entries, count)))
                if type(entries[count - 1]) is Close:  # the close is last and counts no bytes
                    freed -= len(entries[count - 1])
                del entries[:count]
                self.bytes -= freed
        return bool(self.close_seq) and ack >= self.close_seq

    def deliver(
        self, events: list[tuple[int, Any]], start: int, session: Any, handle: Any, open_state: Any
    ) -> int:
        """Number the messages of ``events[start:]`` (one read's ``(opcode, value)`` pairs) in
        ``received_seq`` and hand each to ``handle(session, message)`` while ``session.state`` is
        ``open_state``; a text's leading ``!!`` loses one ``!``, an ``Exception`` of the handler goes to
        ``session._callback_failed("on_message")``. Stops at the first event that is not a message (a
        control text, a ping, a close, an error): returns its index, ``len(events)`` when there is none.
        """
        for index in range(start, len(events)):
            kind, message = events[index]
            if kind == OP_TEXT:
                if message and message[0] == CONTROL:  # an index, not a slice: no new object
                    if message[:2] != ESCAPED:
                        return index
                    message = message[1:]
            elif kind != OP_BINARY:
                return index
            self.received_seq += 1
            if session.state == open_state:
                try:
                    handle(session, message)
                except Exception:
                    session._callback_failed("on_message")
        return len(events)


_NumberedBuffer: Any = speedups.NumberedBuffer if speedups is not None else _NumberedBufferPython


class SessionState(_NumberedBuffer):
    """Sequence numbers, the resume buffer and the inbound count of one session.

    Outbound: :meth:`push` numbers a message and keeps it until :meth:`acknowledge`
    (``push_plain``, of the base, is the unkeyed case the server runs per message; ``acknowledge``,
    of the base too, drops what the peer confirmed).
    The buffer holds the messages themselves (``str``, ``bytes``, the final
    :class:`Close`); their numbers follow from ``first_seq``, and what any
    transport carried is a prefix up to ``carried_seq``. A keyed push replaces in
    place an uncarried message of the same key (conflation). Inbound:
    :meth:`receive` says whether a numbered message is new, a repeat, or a gap.
    The byte limit counts unacknowledged payload bytes.
    """

    __slots__ = ("close_message",)

    def __init__(self, max_bytes: int = 0) -> None:
        super().__init__(max_bytes)
        self.close_message: Close | None = None

    # -- outbound ----------------------------------------------------------------

    def push(self, message: str | bytes, key: Any = None) -> int:
        """Number and keep ``message``; with ``key``, replace an uncarried one of that key instead.

        Returns the message's number. A keyed message followed by an unkeyed one
        keeps its place and content (as the transports' keyed writes do).
        """
        if self.close_seq:
            raise ProtocolError("session is closing")
        size = len(message)
        if key is None:
            if self.keyed:
                self.keyed.clear()
        else:
            seq = self.keyed.get(key)
            if seq is not None and seq > self.carried_seq:
                index = seq - self.first_seq
                grown = self.bytes - len(self.entries[index]) + size
                if self.max_bytes and grown > self.max_bytes:
                    raise BufferFull(f"more than {self.max_bytes} bytes unacknowledged")
                self.entries[index] = message
                self.bytes = grown
                self.replaced += 1
                return seq
        total = self.bytes + size
        if total > self.max_bytes and self.max_bytes:
            raise BufferFull(f"more than {self.max_bytes} bytes unacknowledged")
        seq = self.sent_seq = self.sent_seq + 1
        self.entries.append(message)
        self.bytes = total
        if key is not None:
            self.keyed[key] = seq
        return seq

    def push_close(self, code: int | None, reason: str = "", *, drop: bool = False) -> int:
        """The close after what is kept (or instead of it, ``drop``); nothing may follow it.

        Returns its number; the message is :attr:`close_message`.
        """
        if self.close_seq:
            return self.close_seq
        if drop:
            self.entries.clear()
            self.keyed.clear()
            self.bytes = 0
            self.first_seq = self.sent_seq + 1
        self.close_message = Close(code, reason)
        self.sent_seq += 1
        self.entries.append(self.close_message)
        self.close_seq = self.sent_seq
        return self.close_seq

    def carried(self, seq: int) -> None:
        """A transport took every message up to ``seq``: a keyed push no longer replaces them."""
        if seq > self.carried_seq:
            self.carried_seq = seq

    @property
    def uncarried(self) -> bool:
        """Whether messages wait that no transport has taken yet."""
        return self.sent_seq > self.carried_seq

    def uncarried_messages(self) -> list[tuple[int, Any]]:
        """Every (number, message) no transport has taken yet, oldest first."""
        start = self.carried_seq + 1
        return list(enumerate(self.entries[start - self.first_seq :], start))

    def unacknowledged(self) -> list[tuple[int, Any]]:
        """Every (number, message) the peer has not confirmed, oldest first (a new transport replays them)."""
        return list(enumerate(self.entries, self.first_seq))

    # -- inbound -----------------------------------------------------------------

    def receive(self, seq: int) -> bool:
        """True for the next message (deliver it), False for a repeat; :class:`SequenceGap` past it."""
        expected = self.received_seq + 1
        if seq == expected:
            self.received_seq = seq
            return True
        if seq < expected:
            return False
        raise SequenceGap(expected, seq)
