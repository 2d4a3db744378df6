"""What daemons say to each other on a Redis channel: one publication, or a presence change.

One publication is one Redis message: ``kind (1 byte) | origin length (1) | origin |
key length (2, big-endian; 0: no key) | key | payload``. The origin is the
publishing node's id, so a node drops its own publications (it delivered them
locally already). Kinds: ``t`` text and ``b`` binary messages (the payload is
the message; a text is UTF-8), ``j`` / ``l`` a member joined / left a room (the
payload is the member's presence entry).
"""

from __future__ import annotations

import struct
from typing import NamedTuple

TEXT, BINARY, JOIN, LEAVE = b"t", b"b", b"j", b"l"
_KINDS = frozenset((TEXT[0], BINARY[0], JOIN[0], LEAVE[0]))
_KEY_LEN = struct.Struct(">H")
MAX_KEY = 0xFFFF


class EnvelopeError(ValueError):
    """A Redis message that is not one of ours (another program on the channel, or truncated)."""


class Envelope(NamedTuple):
    kind: bytes
    origin: bytes
    key: str | None
    payload: bytes


def encode_envelope(kind: bytes, origin: bytes, payload: bytes, key: str | None = None) -> bytes:
    """One message for the channel; ``origin`` is at most 255 bytes, ``key`` at most 65535 UTF-8 bytes."""
    key_bytes = key.encode() if key is not None else b""
    if len(key_bytes) > MAX_KEY:
        raise ValueError("a conflation key crossing nodes is at most 65535 bytes")
    return b"".join((kind, bytes((len(origin),)), origin, _KEY_LEN.pack(len(key_bytes)), key_bytes, payload))


def encode_message(origin: bytes, message: str | bytes, key: str | None = None) -> bytes:
    """A publication of ``message`` (text as UTF-8, binary as it is)."""
    if type(message) is str:
        return encode_envelope(TEXT, origin, message.encode(), key)
    return encode_envelope(BINARY, origin, bytes(message), key)


def decode_envelope(data: bytes) -> Envelope:
    """The parts of ``data``; raises :class:`EnvelopeError` when it is not an envelope."""
    if len(data) < 4 or data[0] not in _KINDS:
        raise EnvelopeError("not a wsdaemon publication")
    end = 2 + data[1]
    if len(data) < end + 2:
        raise EnvelopeError("truncated publication")
    (key_len,) = _KEY_LEN.unpack_from(data, end)
    start = end + 2 + key_len
    if len(data) < start:
        raise EnvelopeError("truncated publication")
    try:
        key = data[end + 2 : start].decode() if key_len else None
    except UnicodeDecodeError:
        raise EnvelopeError("a publication's key is not UTF-8") from None
    return Envelope(data[:1], data[2:end], key, data[start:])
