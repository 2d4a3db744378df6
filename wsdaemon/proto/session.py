"""Resumable sessions without I/O: the envelope codec and the numbered resume buffer.

A session numbers every message in both directions and keeps what the peer has
not acknowledged, so that a new transport (WebSocket or long-polling) can take
over after the old one dropped and nothing is lost or delivered twice. The
WebSocket envelope is described in ``docs/sessions.md``: a text message is
``<seq in base 36>:<text>``, a binary one a LEB128 varint ``seq`` before the
bytes, and control messages are text starting with ``!``. Long-polling carries
the same numbers in its JSON items (:mod:`wsdaemon.proto.longpoll`).
"""

from __future__ import annotations

import json
from collections import deque
from typing import Any, NamedTuple

from .errors import ProtocolError

#: The query parameter a client of ours adds to ask for a session: ``new`` or ``ID.TOKEN.ACK``.
SESSION_PARAM = "wsdaemon_session"
NEW = "new"
#: Close code a client gets when the session it wants to resume is gone.
NOT_RECOVERED = 4000
NOT_RECOVERED_REASON = "session not recovered"

CONTROL = "!"
HELLO = "!h"
ACK = "!a"
_DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"
_MAX_SEQ_DIGITS = 12  # base 36: up to 4.7e18, more than any session sends
#: Two base-36 digits for every number below 36**2: with and without a leading zero.
_PAIRS = [a + b for a in _DIGITS for b in _DIGITS]
_SHORT = [pair.lstrip("0") or "0" for pair in _PAIRS]


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
        return _SHORT[n]
    head, low = divmod(n, 1296)
    return (base36(head) if head >= 1296 else _SHORT[head]) + _PAIRS[low]


def parse_base36(text: str) -> int:
    if not text or len(text) > _MAX_SEQ_DIGITS or not text.isalnum() or not text.isascii():
        raise ProtocolError(f"bad sequence number {text[:16]!r}")
    return int(text, 36)


def encode_varint(n: int) -> bytes:
    """Unsigned LEB128: 7 bits per byte, low bits first, high bit set on every byte but the last."""
    if n < 0x80:
        return bytes((n,))
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def decode_varint(data: bytes | memoryview) -> tuple[int, int]:
    """(value, bytes used) of the varint at the start of ``data``."""
    value = shift = 0
    for i in range(min(len(data), 9)):
        byte = data[i]
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, i + 1
        shift += 7
    raise ProtocolError("binary message without a valid sequence number")


# -- the WebSocket envelope ----------------------------------------------------------


def encode_text(seq: int, text: str) -> bytes:
    """A numbered text message, as the payload of a text frame (UTF-8)."""
    return (base36(seq) + ":" + text).encode("utf-8")


def encode_binary(seq: int, data: bytes) -> bytes:
    """A numbered binary message, as the payload of a binary frame."""
    return encode_varint(seq) + data


def encode_hello(session_id: str, token: str, ack: int, resumed: bool, window: float) -> str:
    """The first text message on a session's transport: who it is and what the server has received."""
    doc = {"session": session_id, "token": token, "ack": ack, "resumed": resumed, "window": window}
    return HELLO + json.dumps(doc, separators=(",", ":"))


def encode_ack(seq: int) -> str:
    """``!a<seq>``: every message up to ``seq`` arrived (sent batched, not per message)."""
    return ACK + base36(seq)


def decode_text(text: str) -> tuple[int, str | None]:
    """A text message of the peer: ``(seq, text)`` for a message, ``(ack, None)`` for an ack."""
    if text[:1] == CONTROL:
        if text[:2] == ACK:
            return parse_base36(text[2:]), None
        raise ProtocolError(f"unknown session control message {text[:8]!r}")
    colon = text.find(":", 0, _MAX_SEQ_DIGITS + 1)
    if colon < 0:
        raise ProtocolError("text message without a sequence number")
    return parse_base36(text[:colon]), text[colon + 1 :]


def decode_binary(data: bytes) -> tuple[int, bytes]:
    """A binary message of the peer: ``(seq, payload)``."""
    seq, used = decode_varint(data)
    return seq, data[used:]


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


class Entry:
    """One outbound message (or the close) kept until the peer acknowledges it."""

    __slots__ = ("seq", "message", "key", "size", "sent", "wire")

    def __init__(self, seq: int, message: Any, key: Any, size: int) -> None:
        self.seq = seq
        #: ``str``, ``bytes`` or :class:`Close`.
        self.message = message
        self.key = key
        self.size = size
        #: True once some transport carried it: a keyed send no longer replaces it.
        self.sent = False
        #: The encoded form of a transport that resends it (a long-polling JSON item), cached.
        self.wire: bytes | None = None

    def __repr__(self) -> str:
        return f"Entry({self.seq}, {self.message!r}, key={self.key!r}, sent={self.sent})"


class SessionState:
    """Sequence numbers, the resume buffer and the inbound count of one session.

    Outbound: :meth:`push` numbers a message and keeps it until :meth:`acknowledge`;
    a keyed push replaces an unsent entry of the same key in place (conflation).
    Inbound: :meth:`receive` says whether a numbered message is new, a repeat, or
    a gap. The byte limit counts unacknowledged payload bytes.
    """

    __slots__ = (
        "max_bytes",
        "entries",
        "bytes",
        "sent_seq",
        "acked_seq",
        "received_seq",
        "close_seq",
        "close_entry",
        "keyed",
        "replaced",
    )

    def __init__(self, max_bytes: int = 0) -> None:
        self.max_bytes = max_bytes
        self.entries: deque[Entry] = deque()
        self.bytes = 0
        self.sent_seq = 0
        self.acked_seq = 0
        self.received_seq = 0
        self.close_seq = 0
        self.close_entry: Entry | None = None
        #: key -> the unsent entry carrying it, for the keyed entries pushed since the last unkeyed one.
        self.keyed: dict[Any, Entry] = {}
        #: Keyed messages replaced in place by a newer one.
        self.replaced = 0

    # -- outbound ----------------------------------------------------------------

    def push(self, message: str | bytes, key: Any = None) -> Entry:
        """Number and keep ``message``; with ``key``, replace an unsent one of that key instead.

        A keyed entry followed by an unkeyed one keeps its place and content (as the
        transports' keyed writes do): order around unkeyed messages is kept.
        """
        if self.close_seq:
            raise ProtocolError("session is closing")
        size = len(message)
        if key is None:
            if self.keyed:
                self.keyed.clear()
        else:
            old = self.keyed.get(key)
            if old is not None and not old.sent:
                if self.max_bytes and self.bytes - old.size + size > self.max_bytes:
                    raise BufferFull(f"more than {self.max_bytes} bytes unacknowledged")
                self.bytes += size - old.size
                old.message, old.size, old.wire = message, size, None
                self.replaced += 1
                return old
        total = self.bytes + size
        if total > self.max_bytes and self.max_bytes:
            raise BufferFull(f"more than {self.max_bytes} bytes unacknowledged")
        seq = self.sent_seq = self.sent_seq + 1
        entry = Entry(seq, message, key, size)
        self.entries.append(entry)
        self.bytes = total
        if key is not None:
            self.keyed[key] = entry
        return entry

    def push_close(self, code: int | None, reason: str = "", *, drop: bool = False) -> Entry:
        """The close after what is kept (or instead of it, ``drop``); nothing may follow it."""
        if self.close_entry is not None:
            return self.close_entry
        if drop:
            self.entries.clear()
            self.keyed.clear()
            self.bytes = 0
        entry = self._append(Close(code, reason), None, 0)
        self.close_seq = entry.seq
        self.close_entry = entry
        return entry

    def _append(self, message: Any, key: Any, size: int) -> Entry:
        self.sent_seq += 1
        entry = Entry(self.sent_seq, message, key, size)
        self.entries.append(entry)
        self.bytes += size
        return entry

    def mark_sent(self, entry: Entry) -> None:
        """A transport carried ``entry``: from now on a keyed push makes a new entry."""
        entry.sent = True
        if entry.key is not None and self.keyed.get(entry.key) is entry:
            del self.keyed[entry.key]

    def acknowledge(self, ack: int) -> bool:
        """Drop entries up to ``ack``; True when that confirms the close.

        A stale ack changes nothing; one beyond the last number sent is a protocol error.
        """
        if ack > self.sent_seq:
            raise ProtocolError(f"ack {ack} for a message never sent (last is {self.sent_seq})")
        if ack > self.acked_seq:
            self.acked_seq = ack
            entries = self.entries
            while entries and entries[0].seq <= ack:
                entry = entries.popleft()
                self.bytes -= entry.size
                if entry.key is not None and self.keyed.get(entry.key) is entry:
                    del self.keyed[entry.key]
        return bool(self.close_seq) and ack >= self.close_seq

    def unacknowledged(self) -> list[Entry]:
        """Every entry the peer has not confirmed, oldest first (what a new transport replays)."""
        return list(self.entries)

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
