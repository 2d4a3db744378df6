"""The long-polling protocol without I/O: JSON items, polls' acks, posts, the close item.

The numbers are the session's (:class:`~wsdaemon.proto.session.SessionState`):
outbound messages stay in its buffer until a poll acknowledges them, so a poll
response lost on the way is simply sent again; inbound items carry the client's
numbers, so a retried post is recognised and not delivered twice. The wire
format (JSON) is described in ``docs/long-polling.md``; this module builds and
parses it, byte for byte, and is tested without sockets.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from typing import Any

from .codes import CloseCode, is_valid_close_code
from .errors import ProtocolError
from .session import Close, SequenceGap, SessionState

# Events returned by receive_items
EV_TEXT = "text"
EV_BINARY = "binary"
#: The client's close item: (EV_CLOSE, code, reason); code 1005 when it sent none.
EV_CLOSE = "close"

MAX_CLOSE_REASON = 123  # bytes, as in a WebSocket close frame


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


# -- the session's numbers on long-polling -------------------------------------------
#
# The sequence numbers and the resume buffer are the session's (proto/session.py):
# long-polling shows its entries as JSON items and takes the client's items into it.


def encode_message(seq: int, message: Any) -> bytes:
    """The JSON item of one message of the session's buffer (a :class:`Close` is the close item)."""
    if type(message) is Close:
        return encode_item(seq, encode_close(message.code, message.reason))
    return encode_item(seq, encode_payload(message))


def encode_response(state: SessionState, **extra: Any) -> bytes:
    """A poll (or open) response: every unacknowledged message, which counts as carried from now on."""
    items = [encode_message(seq, message) for seq, message in state.unacknowledged()]
    state.carried(state.sent_seq)
    return encode_batch(state.received_seq, items, **extra)


def receive_items(state: SessionState, items: list[ClientItem], close_received: bool) -> list[tuple]:
    """Events for the new items of a post, in order; repeats are skipped.

    Raises :class:`SequenceGap` when the post starts past the next expected
    number. Nothing after the client's close item is delivered.
    """
    events: list[tuple] = []
    if not items:
        return events
    expected = state.received_seq + 1
    if items[0].seq > expected:
        raise SequenceGap(expected, items[0].seq)
    for item in items:
        if item.seq < expected:
            continue  # already delivered: a retried post
        state.received_seq = item.seq
        expected = item.seq + 1
        if close_received:
            continue
        if item.kind == EV_CLOSE:
            close_received = True
            events.append((EV_CLOSE, item.value, item.reason))
        else:
            events.append((item.kind, item.value))
    return events
