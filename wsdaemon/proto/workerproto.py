"""Framing of the worker protocol: a 4-byte big-endian length, then that many bytes of JSON.

Pure codec, no I/O: :func:`encode` turns one message (a JSON object) into bytes,
:class:`FrameDecoder` turns received bytes, cut anywhere, into messages. Every
frame has a size limit, checked on the length prefix before the body is buffered,
so a peer cannot make the other side hold more than one limit's worth of bytes.
The message types are described in ``docs/workers.md``.
"""

from __future__ import annotations

import json
import struct
from typing import Any

#: Version spoken in ``hello``; a daemon refuses workers of another version.
PROTOCOL_VERSION = 1

#: Default largest frame body (task arguments or result), in bytes.
DEFAULT_MAX_FRAME = 16 * 1024 * 1024

#: Largest frame accepted from a peer that has not yet authenticated.
HELLO_MAX_FRAME = 64 * 1024

_HEADER = struct.Struct(">I")
HEADER_SIZE = _HEADER.size

_encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)


class FrameError(Exception):
    """A frame that breaks the protocol: too large, not JSON, or not a JSON object."""


class FrameTooLarge(FrameError, ValueError):
    """A frame over the size limit (raised by the encoder and the decoder)."""


def encode(message: dict[str, Any], max_size: int = DEFAULT_MAX_FRAME) -> bytes:
    """One frame for ``message``.

    Raises ``TypeError``/``ValueError`` when it is not JSON-serialisable (NaN and
    infinities included: JSON has none), :class:`FrameTooLarge` over ``max_size``.
    """
    body = _encoder.encode(message).encode("utf-8")
    if len(body) > max_size:
        raise FrameTooLarge(f"message of {len(body)} bytes is over the {max_size}-byte limit")
    return _HEADER.pack(len(body)) + body


class FrameDecoder:
    """Incremental decoder: ``feed(data)`` returns the messages completed by ``data``.

    After a :class:`FrameError` the stream is out of sync; the connection must be closed.
    """

    __slots__ = ("max_size", "_buf", "_need")

    def __init__(self, max_size: int = DEFAULT_MAX_FRAME) -> None:
        self.max_size = max_size
        self._buf = bytearray()
        #: Body length of the frame being read, or -1 while the header is incomplete.
        self._need = -1

    @property
    def buffered(self) -> int:
        """Bytes received and not yet returned as messages."""
        return len(self._buf)

    def feed(self, data: bytes = b"") -> list[dict[str, Any]]:
        buf = self._buf
        buf += data
        messages = []
        offset = 0
        end = len(buf)
        while True:
            if self._need < 0:
                if end - offset < HEADER_SIZE:
                    break
                (length,) = _HEADER.unpack_from(buf, offset)
                if length > self.max_size:
                    raise FrameTooLarge(f"frame of {length} bytes is over the {self.max_size}-byte limit")
                offset += HEADER_SIZE
                self._need = length
            if end - offset < self._need:
                break
            body = bytes(buf[offset : offset + self._need])
            offset += self._need
            self._need = -1
            messages.append(_parse(body))
        if offset:
            del buf[:offset]
        return messages


def _parse(body: bytes) -> dict[str, Any]:
    try:
        message = json.loads(body.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise FrameError(f"frame is not UTF-8: {exc}") from None
    except ValueError as exc:
        raise FrameError(f"frame is not JSON: {exc}") from None
    except RecursionError:
        raise FrameError("frame is nested too deeply") from None
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        raise FrameError("frame is not a JSON object with a string 'type'")
    return message
