"""The long-polling protocol without I/O: numbered messages both ways, acks, resend, close.

One :class:`SessionProtocol` per session. Outbound messages get sequence
numbers and stay queued until a poll acknowledges them, so a poll response lost
on the way is simply sent again; inbound messages carry the client's sequence
numbers, so a retried post is recognised and not delivered twice. The wire
format (JSON) is described in ``docs/long-polling.md``; this module builds and
parses it, byte for byte, and is tested without sockets.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections import deque
from collections.abc import Mapping
from typing import Any

from .codes import CloseCode, is_valid_close_code
from .errors import ProtocolError

OPEN = "open"
#: We queued our close item: nothing may follow it.
CLOSING = "closing"

# Events returned by SessionProtocol.receive
EV_TEXT = "text"
EV_BINARY = "binary"
#: The client's close item: (EV_CLOSE, code, reason); code 1005 when it sent none.
EV_CLOSE = "close"

MAX_CLOSE_REASON = 123  # bytes, as in a WebSocket close frame


class QueueFull(Exception):
    """Queuing a message would put the session over its outbound byte limit."""


class SequenceGap(ProtocolError):
    """A post starts after a message the server never got (HTTP 409; resend from ``ack + 1``)."""

    def __init__(self, expected: int, got: int) -> None:
        super().__init__(f"message {got} posted before message {expected}", status=409)
        self.expected = expected


# -- encoding: server -> client ----------------------------------------------------


def encode_text(text: str) -> bytes:
    """The payload part of a text item: ``"text":"..."`` (UTF-8, not escaped)."""
    return b'"text":' + json.dumps(text, ensure_ascii=False).encode("utf-8")


def encode_binary(data: bytes) -> bytes:
    """The payload part of a binary item: ``"binary":"<base64>"``."""
    return b'"binary":"' + base64.b64encode(data) + b'"'


def encode_close(code: int | None, reason: str = "") -> bytes:
    """The payload part of a close item: ``"close":1000,"reason":"..."``."""
    code_json = b"null" if code is None else str(int(code)).encode()
    return b'"close":' + code_json + b',"reason":' + json.dumps(reason, ensure_ascii=False).encode()


def encode_payload(message: str | bytes) -> bytes:
    """The payload part for ``message``: text for ``str``, binary for bytes-like."""
    if type(message) is str:
        return encode_text(message)
    if isinstance(message, (bytes, bytearray, memoryview)):
        return encode_binary(bytes(message))
    raise TypeError(f"send() takes str or bytes, not {type(message).__name__}")


def encode_item(seq: int, payload: bytes) -> bytes:
    """One numbered item: ``{"seq":N,<payload>}``."""
    return b'{"seq":%d,%b}' % (seq, payload)


def encode_batch(ack: int, items: list[bytes] | tuple[bytes, ...], **extra: Any) -> bytes:
    """A poll response: ``{"ack":N,"messages":[...]}`` plus ``extra`` fields."""
    head = b'{"ack":%d' % ack
    for name, value in extra.items():
        head += b',"%b":%b' % (name.encode(), json.dumps(value).encode())
    return head + b',"messages":[' + b",".join(items) + b"]}"


# -- decoding: client -> server ----------------------------------------------------


class ClientItem:
    """One item of a post: a text or binary message, or a close."""

    __slots__ = ("seq", "kind", "value", "reason")

    def __init__(self, seq: int, kind: str, value: Any, reason: str = "") -> None:
        self.seq = seq
        self.kind = kind
        self.value = value
        self.reason = reason

    def __repr__(self) -> str:
        return f"ClientItem({self.seq}, {self.kind!r}, {self.value!r}, {self.reason!r})"


def parse_json_object(body: bytes) -> dict:
    """A request body that must be one JSON object (400 otherwise)."""
    try:
        doc = json.loads(body)
    except (UnicodeDecodeError, ValueError):
        raise ProtocolError("request body is not valid JSON") from None
    except RecursionError:  # "[[[[..." deeper than the interpreter's stack
        raise ProtocolError("request body is nested too deeply") from None
    if not isinstance(doc, dict):
        raise ProtocolError("request body must be a JSON object")
    return doc


def parse_items(body: bytes, max_message_size: int) -> list[ClientItem]:
    """Parse a post body ``{"messages":[{"seq":N,"text"|"binary"|"close":...},...]}``.

    Sequence numbers must be consecutive within one post. Raises
    :class:`ProtocolError` (HTTP 400, or close code 1009 with status 413 for a
    message over ``max_message_size``).
    """
    doc = parse_json_object(body)
    raw = doc.get("messages")
    if not isinstance(raw, list):
        raise ProtocolError('"messages" must be a list')
    items: list[ClientItem] = []
    for entry in raw:
        item = _parse_item(entry, max_message_size)
        if items and item.seq != items[-1].seq + 1:
            raise ProtocolError("sequence numbers in one post must be consecutive")
        items.append(item)
    return items


def _parse_item(entry: Any, max_message_size: int) -> ClientItem:
    if not isinstance(entry, dict):
        raise ProtocolError("each message must be a JSON object")
    seq = entry.get("seq")
    if type(seq) is not int or seq < 1:
        raise ProtocolError('"seq" must be a positive integer')
    kinds = [k for k in ("text", "binary", "close") if k in entry]
    if len(kinds) != 1:
        raise ProtocolError('each message has exactly one of "text", "binary", "close"')
    kind = kinds[0]
    value = entry[kind]
    if kind == EV_TEXT:
        if not isinstance(value, str):
            raise ProtocolError('"text" must be a string')
        try:
            size = len(value.encode("utf-8"))
        except UnicodeEncodeError:
            raise ProtocolError("text is not valid Unicode (lone surrogate)") from None
        _check_size(size, max_message_size)
        return ClientItem(seq, EV_TEXT, value)
    if kind == EV_BINARY:
        if not isinstance(value, str):
            raise ProtocolError('"binary" must be a base64 string')
        try:
            data = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise ProtocolError('"binary" is not valid base64') from None
        _check_size(len(data), max_message_size)
        return ClientItem(seq, EV_BINARY, data)
    reason = entry.get("reason", "")
    if not isinstance(reason, str):
        raise ProtocolError('"reason" must be a string')
    try:
        reason_size = len(reason.encode("utf-8"))
    except UnicodeEncodeError:
        raise ProtocolError("close reason is not valid Unicode") from None
    if reason_size > MAX_CLOSE_REASON:
        raise ProtocolError(f"close reason longer than {MAX_CLOSE_REASON} bytes")
    if value is None:
        if reason:
            raise ProtocolError("a close reason needs a close code")
        return ClientItem(seq, EV_CLOSE, CloseCode.NO_STATUS_RCVD)
    if type(value) is not int or not is_valid_close_code(value):
        raise ProtocolError(f"invalid close code {value!r}")
    return ClientItem(seq, EV_CLOSE, value, reason)


def _check_size(size: int, limit: int) -> None:
    if limit and size > limit:
        raise ProtocolError(f"message larger than {limit} bytes", code=CloseCode.MESSAGE_TOO_BIG, status=413)


def parse_ack(query: Mapping[str, str]) -> int:
    """The ``ack`` query parameter of a poll: the last server sequence number received."""
    text = query.get("ack", "0")
    if not text.isdigit() or not text.isascii() or len(text) > 18:
        raise ProtocolError('"ack" must be a non-negative integer')
    return int(text)


# -- the session state machine -----------------------------------------------------


class SessionProtocol:
    """Sequence numbers, acknowledgements and the close handshake of one session.

    Outbound: :meth:`push` numbers a payload and queues it; :meth:`acknowledge`
    drops what the client confirmed; :meth:`pending` is everything still
    unconfirmed (a poll response resends all of it). Inbound: :meth:`receive`
    turns a post's items into events, skipping ones already delivered.
    """

    __slots__ = (
        "max_queue",
        "queue",
        "queued_bytes",
        "sent_seq",
        "acked_seq",
        "received_seq",
        "state",
        "close_seq",
        "close_received",
        "carried_seq",
        "keyed",
        "replaced",
    )

    def __init__(self, max_queue: int = 0) -> None:
        self.max_queue = max_queue
        #: [seq, encoded item] not yet acknowledged, oldest first.
        self.queue: deque[list] = deque()
        self.queued_bytes = 0
        self.sent_seq = 0
        self.acked_seq = 0
        self.received_seq = 0
        self.state = OPEN
        #: Sequence number of our close item, once queued.
        self.close_seq = 0
        self.close_received = False
        #: The last sequence number a response carried: later items are unsent (replaceable).
        self.carried_seq = 0
        #: key -> queue entry of the unsent keyed items pushed since the last unkeyed one.
        self.keyed: dict[Any, list] | None = None
        #: Keyed items replaced in place by a newer one with the same key.
        self.replaced = 0

    # -- outbound ----------------------------------------------------------------

    def push(self, payload: bytes) -> int:
        """Queue one message payload (see :func:`encode_payload`); return its sequence number."""
        seq = self._push(payload)
        if self.keyed:
            self.keyed = None  # keyed items before an unkeyed one keep their place and content
        return seq

    def _push(self, payload: bytes) -> int:
        if self.state != OPEN:
            raise ProtocolError("session is closing")
        item = encode_item(self.sent_seq + 1, payload)
        if self.max_queue and self.queued_bytes + len(item) > self.max_queue:
            raise QueueFull(f"more than {self.max_queue} bytes queued")
        return self._append(item)

    def push_keyed(self, payload: bytes, key: Any) -> int:
        """Queue a payload under ``key``: an unsent item with that key (and no unkeyed item
        after it) is replaced in place, keeping its sequence number; else as :meth:`push`."""
        keyed = self.keyed
        entry = keyed.get(key) if keyed else None
        if entry is None or entry[0] <= self.carried_seq:
            seq = self._push(payload)
            if keyed is None:
                keyed = self.keyed = {}
            keyed[key] = self.queue[-1]
            return seq
        if self.state != OPEN:
            raise ProtocolError("session is closing")
        item = encode_item(entry[0], payload)
        grown = self.queued_bytes + len(item) - len(entry[1])
        if self.max_queue and grown > self.max_queue:
            raise QueueFull(f"more than {self.max_queue} bytes queued")
        entry[1] = item
        self.queued_bytes = grown
        self.replaced += 1
        return entry[0]

    def push_close(self, code: int | None, reason: str = "", *, drop_queue: bool = False) -> int:
        """Queue our close item after what is queued (or instead of it); no message follows."""
        if self.close_seq:
            return self.close_seq
        if drop_queue:
            self.queue.clear()
            self.queued_bytes = 0
        self.keyed = None
        self.close_seq = self._append(encode_item(self.sent_seq + 1, encode_close(code, reason)))
        if self.state == OPEN:
            self.state = CLOSING
        return self.close_seq

    def _append(self, item: bytes) -> int:
        self.sent_seq += 1
        self.queue.append([self.sent_seq, item])
        self.queued_bytes += len(item)
        return self.sent_seq

    def acknowledge(self, ack: int) -> bool:
        """Drop items up to ``ack``; True when that confirms our close item.

        An ack below an earlier one (a stale poll) changes nothing; one above
        the last sequence number sent is a protocol error.
        """
        if ack > self.sent_seq:
            raise ProtocolError(f"ack {ack} for a message never sent (last is {self.sent_seq})")
        if ack > self.acked_seq:
            self.acked_seq = ack
            queue = self.queue
            while queue and queue[0][0] <= ack:
                self.queued_bytes -= len(queue.popleft()[1])
        return bool(self.close_seq) and ack >= self.close_seq

    @property
    def has_pending(self) -> bool:
        return bool(self.queue)

    def pending(self) -> list[bytes]:
        """Every unacknowledged item, oldest first."""
        return [item for _, item in self.queue]

    @property
    def has_unsent(self) -> bool:
        """Whether items wait that no response has carried yet."""
        return self.sent_seq > self.carried_seq and bool(self.queue)

    def response(self, **extra: Any) -> bytes:
        """A poll response carrying every unacknowledged item; from now on they are sent."""
        self.carried_seq = self.sent_seq
        self.keyed = None
        return encode_batch(self.received_seq, self.pending(), **extra)

    # -- inbound -----------------------------------------------------------------

    def receive(self, items: list[ClientItem]) -> list[tuple]:
        """Events for the new items of a post, in order; repeats are skipped.

        Raises :class:`SequenceGap` when the post starts past the next expected
        number. Nothing after the client's close item is delivered.
        """
        events: list[tuple] = []
        if not items:
            return events
        expected = self.received_seq + 1
        if items[0].seq > expected:
            raise SequenceGap(expected, items[0].seq)
        for item in items:
            if item.seq < expected:
                continue  # already delivered: a retried post
            self.received_seq = item.seq
            expected = item.seq + 1
            if self.close_received:
                continue
            if item.kind == EV_CLOSE:
                self.close_received = True
                events.append((EV_CLOSE, item.value, item.reason))
            else:
                events.append((item.kind, item.value))
        return events
