"""hixie-76 and hixie-75 codec without I/O: key answers, handshake responses, frames.

The two drafts old browsers spoke before RFC 6455 (draft-hixie-thewebsocketprotocol-75
and -76, the latter also published as draft-ietf-hybi-00). Both carry text only:
a text frame is ``0x00``, UTF-8, ``0xFF``. A frame type with the high bit set is
followed by a base-128 length (high bit = "more length bytes follow") and that
many bytes, which a server reads and discards; in -76 the type ``0xFF`` with
length 0 is the closing handshake. Other sentinel frame types (``0x01``-``0x7F``)
are read up to ``0xFF`` and discarded.

-76 adds a challenge: two keys in headers whose digits, divided by their count
of spaces, are two 32-bit numbers; with the 8 bytes (key3) that follow the
request head they give the MD5 answer sent after the response head.
"""

from __future__ import annotations

import codecs
import hashlib
import re
import struct
import urllib.parse

from .codes import CloseCode
from .errors import HandshakeError, ProtocolError
from .http11 import Request, build_response
from .rfc6455 import EV_ERROR, OP_CLOSE, OP_TEXT

__all__ = [
    "CLOSE_FRAME",
    "EV_ERROR",
    "KEY3_SIZE",
    "OP_CLOSE",
    "OP_TEXT",
    "FrameParser",
    "challenge_answer",
    "encode_text",
    "key_number",
    "key_numbers",
    "offered_subprotocols",
    "response_75",
    "response_76",
    "validate_request",
]

#: Length of the -76 challenge body that follows the request head.
KEY3_SIZE = 8
#: The -76 closing handshake, in both directions.
CLOSE_FRAME = b"\xff\x00"

#: Base-128 length bytes accepted before a length frame is refused (2**70 > any limit).
MAX_LENGTH_BYTES = 10

_pack_numbers = struct.Struct("!II").pack
_Utf8Decoder = codecs.getincrementaldecoder("utf-8")

# Host: a reg-name or IPv4 address, or a bracketed IPv6 literal, and an optional port.
_HOST_RE = re.compile(r"^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~!$&'()*+,;=%]+)(?::[0-9]{1,5})?$")
# What the drafts allow in a resource name and a subprotocol: U+0021 to U+007E.
_VISIBLE_RE = re.compile(r"^[\x21-\x7e]+$")
# Printable ASCII, space included: what we reflect in Origin.
_PRINTABLE_RE = re.compile(r"^[\x20-\x7e]*$")


# --- handshake -------------------------------------------------------------


def key_number(key: str, name: str = "Sec-WebSocket-Key1") -> int:
    """The 32-bit number a -76 key encodes: its digits read as one number, divided by its spaces.

    Raises :class:`HandshakeError` (400) for a key with no digits, no spaces, a
    number over 32 bits, or a number that is not a multiple of its spaces.
    """
    digits = "".join(c for c in key if "0" <= c <= "9")
    spaces = key.count(" ")
    if not digits:
        raise HandshakeError(f"{name} has no digits", 400)
    if spaces == 0:
        raise HandshakeError(f"{name} has no spaces", 400)
    significant = digits.lstrip("0") or "0"
    if len(significant) > 10 or int(significant) > 0xFFFFFFFF:
        raise HandshakeError(f"{name} number does not fit in 32 bits", 400)
    number = int(significant)
    if number % spaces:
        raise HandshakeError(f"{name} number is not a multiple of its {spaces} spaces", 400)
    return number // spaces


def key_numbers(request: Request) -> tuple[int, int]:
    """Both key numbers of a -76 request; each key header must appear exactly once."""
    numbers = []
    for name in ("Sec-WebSocket-Key1", "Sec-WebSocket-Key2"):
        values = request.headers.get_all(name)
        if len(values) != 1:
            raise HandshakeError(f"exactly one {name} required", 400)
        numbers.append(key_number(values[0], name))
    return numbers[0], numbers[1]


def challenge_answer(number1: int, number2: int, key3: bytes) -> bytes:
    """The 16 bytes a -76 server sends after its response head: MD5 of both numbers and key3."""
    if len(key3) != KEY3_SIZE:
        raise ValueError("key3 must be 8 bytes")
    return hashlib.md5(_pack_numbers(number1, number2) + bytes(key3)).digest()


def validate_request(request: Request) -> None:
    """Checks both drafts make of the opening request, beyond what selected the draft."""
    if request.method != "GET":
        raise HandshakeError("WebSocket handshake must use GET", 405, [("Allow", "GET")])
    if request.version != "1.1":
        raise HandshakeError("WebSocket handshake requires HTTP/1.1", 400)
    if not request.headers.has_token("Connection", "upgrade"):
        raise HandshakeError("missing Connection: Upgrade", 400)
    _host(request)


def offered_subprotocols(request: Request, header: str) -> list[str]:
    """The subprotocol a hixie client asked for: one string in these drafts, not a list."""
    values = request.headers.get_all(header)
    if not values:
        return []
    if len(values) > 1:
        raise HandshakeError(f"more than one {header} header", 400)
    value = values[0]
    if not _VISIBLE_RE.match(value):
        raise HandshakeError(f"{header} must be characters U+0021 to U+007E", 400)
    return [value]


def response_76(request: Request, subprotocol: str | None = None) -> bytes:
    """The -76 response head; the 16-byte :func:`challenge_answer` follows it on the wire."""
    headers = [("Upgrade", "WebSocket"), ("Connection", "Upgrade")]
    origin = _origin(request)
    if origin is not None:
        headers.append(("Sec-WebSocket-Origin", origin))
    headers.append(("Sec-WebSocket-Location", location(request)))
    if subprotocol:
        headers.append(("Sec-WebSocket-Protocol", _checked_subprotocol(subprotocol)))
    return build_response(101, headers, reason="WebSocket Protocol Handshake", content_length=False)


def response_75(request: Request, subprotocol: str | None = None) -> bytes:
    """The complete -75 response: ``WebSocket-*`` headers without ``Sec-``, and no body."""
    headers = [("Upgrade", "WebSocket"), ("Connection", "Upgrade")]
    origin = _origin(request)
    if origin is not None:
        headers.append(("WebSocket-Origin", origin))
    headers.append(("WebSocket-Location", location(request)))
    if subprotocol:
        headers.append(("WebSocket-Protocol", _checked_subprotocol(subprotocol)))
    return build_response(101, headers, reason="Web Socket Protocol Handshake", content_length=False)


def location(request: Request) -> str:
    """``ws://`` or ``wss://``, the validated Host, then the resource name as requested."""
    target = request.target
    if not target.startswith("/"):
        parts = urllib.parse.urlsplit(target)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    if not _VISIBLE_RE.match(target):
        raise HandshakeError("resource name must be characters U+0021 to U+007E", 400)
    scheme = "wss" if request.secure else "ws"
    return f"{scheme}://{_host(request)}{target}"


def _host(request: Request) -> str:
    values = request.headers.get_all("Host")
    if len(values) != 1:
        raise HandshakeError("exactly one Host header required", 400)
    host = values[0]
    if len(host) > 261 or not _HOST_RE.match(host):
        raise HandshakeError("invalid Host header", 400)
    return host


def _origin(request: Request) -> str | None:
    values = request.headers.get_all("Origin")
    if not values:
        return None
    if len(values) > 1:
        raise HandshakeError("more than one Origin header", 400)
    if not _PRINTABLE_RE.match(values[0]):
        raise HandshakeError("control or non-ASCII character in Origin", 400)
    return values[0]


def _checked_subprotocol(subprotocol: str) -> str:
    if not _VISIBLE_RE.match(subprotocol):
        raise HandshakeError("invalid subprotocol", 500)
    return subprotocol


# --- frames ----------------------------------------------------------------


def encode_text(text: str) -> bytes:
    """A text frame: ``0x00``, the UTF-8 bytes, ``0xFF``."""
    return b"\x00" + text.encode("utf-8") + b"\xff"


_START = 0  # between frames
_TEXT = 1  # inside a 0x00 frame: decode up to 0xFF
_SKIP_TEXT = 2  # inside a 0x01-0x7F frame: discard up to 0xFF
_SKIP_BYTES = 3  # inside a length frame: discard ``_skip`` more bytes


class FrameParser:
    """Incremental parser of hixie client frames into ``(kind, value)`` events.

    Kinds, as in :class:`wsdaemon.proto.rfc6455.FrameParser`: ``OP_TEXT`` (str),
    ``OP_CLOSE`` (``(1000, "")``, -76 only, when ``closing_handshake``) and,
    last, ``EV_ERROR`` with a :class:`ProtocolError` (1007 for invalid UTF-8,
    1009 for a frame over ``max_message_size``, 1002 otherwise). A frame over the
    limit fails while it is still arriving: nothing is buffered past the limit.
    After a close or an error the parser ignores input.
    """

    __slots__ = (
        "max_message_size",
        "closing_handshake",
        "_head",
        "_mode",
        "_size",
        "_skip",
        "_parts",
        "_decoder",
        "done",
    )

    def __init__(self, max_message_size: int = 16 * 1024 * 1024, closing_handshake: bool = True):
        self.max_message_size = max_message_size
        self.closing_handshake = closing_handshake
        self._head = b""  # an incomplete frame type + length prefix (a few bytes)
        self._mode = _START
        self._size = 0  # bytes of the sentinel frame received so far
        self._skip = 0
        self._parts: list[str] = []
        self._decoder = None
        self.done = False

    @property
    def buffered(self) -> int:
        """Bytes of an incomplete frame held (decoded text counts by its UTF-8 size)."""
        return len(self._head) + (self._size if self._mode == _TEXT else 0)

    def feed(self, data: bytes) -> list:
        if self.done:
            return []
        if self._head:
            data = self._head + bytes(data)
            self._head = b""
        events: list = []
        pos = 0
        n = len(data)
        limit = self.max_message_size
        try:
            while pos < n:
                mode = self._mode
                if mode == _START:
                    frame_type = data[pos]
                    if frame_type & 0x80:
                        pos = self._length_frame(data, pos, frame_type, events)
                        if self.done:
                            break
                        continue
                    end = data.find(b"\xff", pos + 1)
                    if end >= 0 and frame_type == 0x00:  # the common case: a whole text frame
                        if end - pos - 1 > limit:
                            raise _too_big(limit)
                        events.append((OP_TEXT, _decode(data[pos + 1 : end])))
                        pos = end + 1
                        continue
                    self._mode = _TEXT if frame_type == 0x00 else _SKIP_TEXT
                    self._size = 0
                    pos += 1
                elif mode == _SKIP_BYTES:
                    take = min(self._skip, n - pos)
                    self._skip -= take
                    pos += take
                    if not self._skip:
                        self._mode = _START
                else:
                    end = data.find(b"\xff", pos)
                    stop = n if end < 0 else end
                    size = self._size + stop - pos
                    if size > limit:
                        raise _too_big(limit)
                    self._size = size
                    if mode == _TEXT:
                        decoder = self._decoder
                        if decoder is None:
                            decoder = self._decoder = _Utf8Decoder()
                        self._parts.append(_decode_part(decoder, data[pos:stop], end >= 0))
                    if end < 0:
                        break
                    if mode == _TEXT:
                        events.append((OP_TEXT, "".join(self._parts)))
                        self._parts = []
                        self._decoder = None
                    self._mode = _START
                    pos = end + 1
        except ProtocolError as exc:
            events.append((EV_ERROR, exc))
            self.done = True
            self._head = b""
            self._mode = _START
            self._size = 0
            self._parts = []
            self._decoder = None
        return events

    def _length_frame(self, data: bytes, pos: int, frame_type: int, events: list) -> int:
        """Read a length-prefixed frame's header at ``pos``; return where to go on."""
        length = 0
        i = pos + 1
        n = len(data)
        while True:
            if i >= n:
                self._head = bytes(data[pos:])
                return n
            b = data[i]
            i += 1
            length = (length << 7) | (b & 0x7F)
            if not b & 0x80:
                break
            if i - pos > MAX_LENGTH_BYTES:
                raise ProtocolError("length of a binary frame has too many bytes")
            if length > self.max_message_size:
                raise _too_big(self.max_message_size)
        if frame_type == 0xFF and length == 0 and self.closing_handshake:
            events.append((OP_CLOSE, (CloseCode.NORMAL_CLOSURE, "")))
            self.done = True
            return i
        if length > self.max_message_size:
            raise _too_big(self.max_message_size)
        if length:
            self._mode = _SKIP_BYTES
            self._skip = length
        return i


def _decode(payload: bytes) -> str:
    try:
        return payload.decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolError("invalid UTF-8 in text message", CloseCode.INVALID_DATA) from None


def _decode_part(decoder, payload: bytes, final: bool) -> str:
    try:
        return decoder.decode(payload, final)
    except UnicodeDecodeError:
        raise ProtocolError("invalid UTF-8 in text message", CloseCode.INVALID_DATA) from None


def _too_big(limit: int) -> ProtocolError:
    return ProtocolError(f"message larger than {limit} bytes", CloseCode.MESSAGE_TOO_BIG)
