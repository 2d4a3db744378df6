"""RFC 6455 codec without I/O: handshake checks, frame parsing and encoding.

:class:`FrameParser` turns the bytes a client sent into events in arrival
order; every check of section 5 is made as soon as the frame header is known,
and text is validated as UTF-8 while it arrives so a bad message fails fast.
"""

from __future__ import annotations

import binascii
import codecs
import hashlib
import re
import struct
from typing import Any

from .accel import speedups
from .codes import CloseCode, is_valid_close_code
from .errors import HandshakeError, ProtocolError
from .http11 import Request, build_response, has_token, is_token, joined
from .masking import apply_mask, join_unmask

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
SUPPORTED_VERSIONS = ("13", "8")

OP_CONT = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA
#: Event kind appended last by :meth:`FrameParser.feed` when the stream is broken.
EV_ERROR = -1


_pack_h = struct.Struct("!BB").pack
_pack_h16 = struct.Struct("!BBH").pack
_pack_h64 = struct.Struct("!BBQ").pack
_unpack16 = struct.Struct("!H").unpack_from
_unpack64 = struct.Struct("!Q").unpack_from
_Utf8Decoder = codecs.getincrementaldecoder("utf-8")
#: Binary frames at least this long are collected in pieces and unmasked from a view.
_CHUNKED_FRAME_MIN = 65536
#: ``scan(data, pos, stop, events, max_size, require_mask) -> pos``: the C loop over complete,
#: final, unextended text and binary frames; the Python loop takes every other frame.
_scan_frames = speedups.scan_frames if speedups is not None else None


# --- handshake -------------------------------------------------------------


def accept_key(key: str) -> str:
    """``Sec-WebSocket-Accept`` for a client's ``Sec-WebSocket-Key``."""
    return binascii.b2a_base64(hashlib.sha1((key + GUID).encode("ascii")).digest(), newline=False).decode()


def _accept_key_python(key: str) -> bytes:
    return accept_key(key).encode()


#: ``Sec-WebSocket-Accept`` as bytes, computed in C when it is built.
_accept_key_bytes = speedups.accept_key if speedups is not None else _accept_key_python

#: What ``base64.b64decode(key, validate=True)`` turns into exactly 16 bytes.
_KEY_RE = re.compile(r"[A-Za-z0-9+/]{22}==")


def validate_handshake(request: Request) -> str:
    """Check an RFC 6455 opening handshake; return the client's key or raise HandshakeError."""
    if request.method != "GET":
        raise HandshakeError("WebSocket handshake must use GET", 405, [("Allow", "GET")])
    if request.version != "1.1":
        raise HandshakeError("WebSocket handshake requires HTTP/1.1", 400)
    index = request.headers.index()
    if not joined(index.get("host")):
        raise HandshakeError("missing Host header", 400)
    if not has_token(index.get("upgrade", ()), "websocket"):
        raise HandshakeError("missing Upgrade: websocket", 400)
    if not has_token(index.get("connection", ()), "upgrade"):
        raise HandshakeError("missing Connection: Upgrade", 400)
    version = joined(index.get("sec-websocket-version"), "")
    if version not in SUPPORTED_VERSIONS:
        raise HandshakeError(
            f"unsupported WebSocket version {version!r}", 426, [("Sec-WebSocket-Version", "13")]
        )
    keys = index.get("sec-websocket-key", ())
    if len(keys) != 1:
        raise HandshakeError("exactly one Sec-WebSocket-Key required", 400)
    key = keys[0].strip()
    if _KEY_RE.fullmatch(key) is None:
        raise HandshakeError("Sec-WebSocket-Key is not 16 bytes in base64", 400)
    return key


def offered_subprotocols(request: Request) -> list[str]:
    """The subprotocol tokens a client offered, in its order of preference."""
    return [p for p in request.headers.tokens_raw("Sec-WebSocket-Protocol") if is_token(p)]


def accept_response(key: str, subprotocol: str | None = None, extensions: str | None = None) -> bytes:
    """The ``101 Switching Protocols`` response completing the handshake.

    ``extensions`` is the ``Sec-WebSocket-Extensions`` value agreed (only ever one the client offered).
    """
    if not subprotocol and not extensions:
        return _ACCEPT_HEAD + _accept_key_bytes(key) + b"\r\n\r\n"
    headers = [
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Accept", accept_key(key)),
    ]
    if subprotocol:
        headers.append(("Sec-WebSocket-Protocol", subprotocol))
    if extensions:
        headers.append(("Sec-WebSocket-Extensions", extensions))
    return build_response(101, headers, content_length=False)


#: The 101 answer up to the accept key's value, when no subprotocol or extension is agreed.
_ACCEPT_HEAD = (
    build_response(101, [("Upgrade", "websocket"), ("Connection", "Upgrade")], content_length=False)[:-2]
    + b"Sec-WebSocket-Accept: "
)


# --- frames ----------------------------------------------------------------


def encode_frame(opcode: int, payload: bytes = b"", fin: bool = True, mask: bytes | None = None) -> bytes:
    """One frame; servers send unmasked frames, clients (tests) pass a 4-byte ``mask``."""
    b0 = (0x80 if fin else 0) | opcode
    n = len(payload)
    mbit = 0x80 if mask is not None else 0
    if n < 126:
        header = _pack_h(b0, mbit | n)
    elif n < 65536:
        header = _pack_h16(b0, mbit | 126, n)
    else:
        header = _pack_h64(b0, mbit | 127, n)
    if mask is not None:
        return header + mask + apply_mask(payload, mask)
    return header + payload


def frame_head(opcode: int, length: int) -> bytes:
    """The header of a server's final frame of ``length`` bytes: sent apart from a large payload."""
    if length < 126:
        return _pack_h(0x80 | opcode, length)
    if length < 65536:
        return _pack_h16(0x80 | opcode, 126, length)
    return _pack_h64(0x80 | opcode, 127, length)


#: Heads of unmasked final text / binary frames of 0-125 bytes, by payload length.
_TEXT_HEADS = tuple(bytes((0x80 | OP_TEXT, n)) for n in range(126))
_BINARY_HEADS = tuple(bytes((0x80 | OP_BINARY, n)) for n in range(126))


def text_frame(payload: bytes) -> bytes:
    """A server's (unmasked, final) text frame: what every ``send`` of a str builds, without struct."""
    if len(payload) < 126:
        return _TEXT_HEADS[len(payload)] + payload
    return encode_frame(OP_TEXT, payload)


def binary_frame(payload: bytes) -> bytes:
    """A server's (unmasked, final) binary frame."""
    if len(payload) < 126:
        return _BINARY_HEADS[len(payload)] + payload
    return encode_frame(OP_BINARY, payload)


def _message_frame_python(message: str | bytes | bytearray | memoryview) -> bytes:
    """An application's message as a server frame: ``str`` as text, bytes-like as binary."""
    if type(message) is str:
        return text_frame(message.encode("utf-8"))
    if isinstance(message, (bytes, bytearray, memoryview)):
        return binary_frame(bytes(message))
    raise TypeError(f"send() takes str or bytes, not {type(message).__name__}")


#: ``message_frame(message) -> bytes``: what every plain ``send`` writes, built in C when it is built.
message_frame = speedups.message_frame if speedups is not None else _message_frame_python


def encode_close(code: int | None = CloseCode.NORMAL_CLOSURE, reason: str = "") -> bytes:
    """A close frame; the reason is cut at a character boundary to fit 123 bytes."""
    if code is None:
        return encode_frame(OP_CLOSE, b"")
    if not reason:
        frame = _CLOSE_FRAMES.get(code)
        if frame is not None:
            return frame
    raw = reason.encode("utf-8")
    if len(raw) > 123:
        raw = raw[:123].decode("utf-8", "ignore").encode("utf-8")
    return encode_frame(OP_CLOSE, struct.pack("!H", code) + raw)


#: Close frames without a reason for the codes of RFC 6455 7.4.1, by code.
_CLOSE_FRAMES = {code: encode_frame(OP_CLOSE, struct.pack("!H", code)) for code in range(1000, 1016)}


def parse_close_payload(payload: bytes) -> tuple[int, str]:
    """Code and reason of a received close frame; 1005 when it carries no code."""
    if not payload:
        return CloseCode.NO_STATUS_RCVD, ""
    if len(payload) == 1:
        raise ProtocolError("close frame with a 1-byte payload")
    code = _unpack16(payload)[0]
    if code != 1000 and not is_valid_close_code(code):
        raise ProtocolError(f"invalid close code {code}")
    try:
        reason = payload[2:].decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolError("close reason is not valid UTF-8", CloseCode.INVALID_DATA) from None
    return code, reason


class FrameParser:
    """Incremental parser of client frames into ``(kind, value)`` events.

    Kinds: ``OP_TEXT`` (str), ``OP_BINARY`` (bytes), ``OP_PING``/``OP_PONG``
    (bytes), ``OP_CLOSE`` (``(code, reason)``) and, last, ``EV_ERROR`` with a
    :class:`ProtocolError`. After a close or an error the parser ignores input.
    """

    __slots__ = (
        "max_message_size",
        "max_frames_per_message",
        "require_mask",
        "_buf",
        "_msg_opcode",
        "_msg_parts",
        "_msg_size",
        "_msg_frames",
        "_msg_decoder",
        "_partial_checked",
        "_partial_decoder",
        "_chunks",
        "_chunks_len",
        "_chunks_needed",
        "_chunks_opcode",
        "resume_at",
        "budget",
        "done",
    )

    def __init__(
        self,
        max_message_size: int = 16 * 1024 * 1024,
        require_mask: bool = True,
        max_frames_per_message: int = 100_000,
    ) -> None:
        self.max_message_size = max_message_size
        #: Frames one fragmented message may take (0: no limit); bounds the parts kept.
        self.max_frames_per_message = max_frames_per_message
        self.require_mask = require_mask
        self._buf = b""
        self._msg_opcode = 0
        self._msg_parts: list = []
        self._msg_size = 0
        self._msg_frames = 0
        self._msg_decoder = None
        self._partial_checked = 0
        self._partial_decoder = None
        #: Pieces of a large binary frame still arriving, joined once it is complete.
        self._chunks: list | None = None
        self._chunks_len = 0
        self._chunks_needed = 0
        self._chunks_opcode = 0
        #: Where parsing of ``_buf`` resumes after the budget ran out (0: no backlog).
        self.resume_at = 0
        #: Bytes of frame starts parsed per feed (0: all): the work budget of one loop turn.
        self.budget = 0
        self.done = False

    @property
    def buffered(self) -> int:
        """Bytes received and kept for an incomplete frame or for the next turn."""
        return len(self._buf) - self.resume_at + self._chunks_len

    @property
    def backlog(self) -> bool:
        """True when the budget stopped a feed with complete frames left: ``feed(b"")`` goes on."""
        return self.resume_at > 0

    def feed(self, data: bytes) -> list:
        if self.done:
            return []
        scan = _scan_frames
        if (
            scan is not None
            and not (self._buf or self.resume_at or self._msg_opcode)
            and self._chunks is None
        ):
            # Nothing kept from earlier reads: the C loop takes the read as it is.
            events: list = []
            n = len(data)
            budget = self.budget
            stop = budget if budget and budget < n - 1 else n - 1
            pos = scan(data, 0, stop, events, self.max_message_size, self.require_mask)
            if pos == n:
                return events
            return self._parse(data, pos, stop, events, False)
        if self._chunks is not None:
            # Collect a large frame's pieces and copy them once, instead of
            # growing a buffer (and copying it) with every read.
            self._chunks.append(data if type(data) is bytes else bytes(data))
            self._chunks_len += len(data)
            if self._chunks_len < self._chunks_needed:
                return []
            events, data = self._chunked_frame()
            if self.done or not data:
                return events
            stop = len(data) - 1
            if self.budget and stop > self.budget:
                stop = self.budget
            return self._parse(data, 0, stop, events, False)
        buf = self._buf
        pos = self.resume_at
        if pos:  # the rest of a read that the budget stopped
            self.resume_at = 0
            if data:
                buf = bytearray(memoryview(buf)[pos:])
                buf += data
                pos = 0
            data = buf
        elif buf:
            if isinstance(buf, bytes):
                buf = bytearray(buf)
            buf += data
            data = buf
        stop = len(data) - 1  # a frame needs at least 2 bytes
        if self.budget and stop - pos > self.budget:
            stop = pos + self.budget
        return self._parse(data, pos, stop, [], data is buf and type(buf) is bytearray)

    def _parse(self, data: bytes | bytearray, pos: int, stop: int, events: list, owned: bool) -> list:
        """Frames of ``data`` from ``pos`` that start below ``stop``; what is left is kept.

        ``owned``: ``data`` is this parser's own buffer, whose parsed part can be deleted in place.
        """
        append = events.append
        n = len(data)
        scan = _scan_frames
        try:
            while pos < stop:
                if scan is not None and not self._msg_opcode:
                    scanned = scan(data, pos, stop, events, self.max_message_size, self.require_mask)
                    if scanned != pos:
                        self._partial_decoder = None
                        self._partial_checked = 0
                        pos = scanned
                        continue
                b0 = data[pos]
                b1 = data[pos + 1]
                length = b1 & 0x7F
                hdr = 2
                if length == 126:
                    if n - pos < 4:
                        break
                    length = _unpack16(data, pos + 2)[0]
                    hdr = 4
                elif length == 127:
                    if n - pos < 10:
                        break
                    length = _unpack64(data, pos + 2)[0]
                    hdr = 10
                opcode = b0 & 0x0F
                if b0 & 0x70 or opcode & 0x08 or opcode > 2 or length > 65535:
                    opcode = self._check_header(b0, opcode, length)
                if opcode == 0:
                    if not self._msg_opcode:
                        raise ProtocolError("continuation frame without a message to continue")
                    if self._msg_frames == self.max_frames_per_message:
                        raise ProtocolError(
                            f"message in more than {self.max_frames_per_message} frames",
                            CloseCode.MESSAGE_TOO_BIG,
                        )
                elif opcode < 8 and self._msg_opcode:
                    raise ProtocolError("new data frame inside a fragmented message")
                if opcode < 8 and self._msg_size + length > self.max_message_size:
                    raise ProtocolError(
                        f"message larger than {self.max_message_size} bytes", CloseCode.MESSAGE_TOO_BIG
                    )
                if b1 & 0x80:
                    start = pos + hdr + 4
                    if n < start:
                        break
                    mask = data[start - 4 : start]
                elif self.require_mask:
                    raise ProtocolError("client frame is not masked")
                else:
                    start = pos + hdr
                    mask = None
                end = start + length
                if end > n:
                    if opcode == OP_TEXT or (opcode == 0 and self._msg_opcode == OP_TEXT):
                        self._check_partial_text(data, start, n, mask, opcode)
                    elif length >= _CHUNKED_FRAME_MIN:
                        self._chunks_needed = end - pos
                        self._chunks_opcode = opcode
                    break
                if length < _CHUNKED_FRAME_MIN:
                    payload = apply_mask(data[start:end], mask) if mask else bytes(data[start:end])
                else:  # unmask straight from the receive buffer, without a slice copy
                    view = memoryview(data)[start:end]
                    payload = apply_mask(view, mask) if mask else bytes(view)
                    view.release()
                pos = end
                if self._frame_event(b0, opcode, length, payload, append):
                    break
            else:
                if pos < n - 1:  # the budget ran out with frames left: they wait for the next turn
                    self._buf = data
                    self.resume_at = pos
                    return events
        except ProtocolError as exc:
            append((EV_ERROR, exc))
            self.done = True
            self._buf = b""
            return events
        if pos >= n:
            self._buf = b""
        elif self._chunks_needed:
            self._chunks = [bytes(data[pos:])]
            self._chunks_len = n - pos
            self._buf = b""
        elif owned:
            del data[:pos]  # type: ignore[union-attr]
            self._buf = data
        else:
            self._buf = bytes(data[pos:])
        return events

    def _frame_event(self, b0: int, opcode: int, length: int, payload: bytes, append: Any) -> bool:
        """Add the event of one complete frame, or keep it as a fragment; True after a close frame."""
        self._partial_decoder = None
        self._partial_checked = 0
        fin = b0 & 0x80
        if opcode == OP_TEXT:
            if fin:
                try:
                    append((OP_TEXT, payload.decode("utf-8")))
                except UnicodeDecodeError:
                    raise ProtocolError("invalid UTF-8 in text message", CloseCode.INVALID_DATA) from None
            else:
                self._start_message(OP_TEXT, length)
                self._msg_decoder = decoder = _Utf8Decoder()
                self._msg_parts.append(self._decode(decoder, payload, False))
        elif opcode == OP_BINARY:
            if fin:
                append((OP_BINARY, payload))
            else:
                self._start_message(OP_BINARY, length)
                self._msg_parts.append(payload)
        elif opcode == OP_CONT:
            self._msg_size += length
            self._msg_frames += 1
            if self._msg_opcode == OP_TEXT:
                self._msg_parts.append(self._decode(self._msg_decoder, payload, bool(fin)))
            else:
                self._msg_parts.append(payload)
            if fin:
                parts = self._msg_parts
                msg_opcode = self._msg_opcode
                if msg_opcode == OP_TEXT:
                    append((OP_TEXT, "".join(parts)))
                elif msg_opcode == OP_BINARY:
                    append((OP_BINARY, b"".join(parts)))
                else:
                    append(self._message_end(msg_opcode, b"".join(parts)))
                self._msg_opcode = 0
                self._msg_parts = []
                self._msg_size = 0
                self._msg_frames = 0
                self._msg_decoder = None
        elif opcode == OP_CLOSE:
            append((OP_CLOSE, parse_close_payload(payload)))
            self.done = True
            return True
        elif opcode & 0x08:  # ping or pong
            append((opcode, payload))
        elif fin:  # an opcode _check_header gave an extension's message (3..7)
            append(self._message_end(opcode, payload))
        else:
            self._start_message(opcode, length)
            self._msg_parts.append(payload)
        return False

    def _chunked_frame(self) -> tuple[list, bytes]:
        """The large frame whose pieces have all arrived, as events, and the bytes after it.

        The payload is unmasked straight out of the pieces (one copy, not a join and an unmask).
        """
        chunks, end, opcode = self._chunks, self._chunks_needed, self._chunks_opcode
        extra = self._chunks_len - end  # what follows the frame: all in the last piece
        self._chunks = None
        self._chunks_len = self._chunks_needed = 0
        head = chunks[0]  # starts with the frame's header and mask
        b1 = head[1]
        hdr = 2 if (b1 & 0x7F) < 126 else 4 if (b1 & 0x7F) == 126 else 10
        start = hdr + 4 if b1 & 0x80 else hdr
        payload = join_unmask(chunks, start, end, head[hdr:start] if b1 & 0x80 else None)
        events: list = []
        try:
            self._frame_event(head[0], opcode, end - start, payload, events.append)
        except ProtocolError as exc:
            events.append((EV_ERROR, exc))
            self.done = True
        last = chunks[-1]
        return events, last[len(last) - extra :] if extra else b""

    def _check_header(self, b0: int, opcode: int, length: int) -> int:
        """Check a frame header off the fast path (RSV bits, control frames, long frames).

        Returns the opcode to handle the frame with: an extension's parser (see
        :mod:`wsdaemon.proto.deflate_frames`) maps its first frames to the unused data opcodes
        3..7, whose payloads reach :meth:`_message_end` whole (continuation frames included).
        """
        if b0 & 0x70:
            raise ProtocolError("reserved bits set without a negotiated extension")
        if opcode & 0x08:
            if opcode > OP_PONG:
                raise ProtocolError(f"unknown control opcode {opcode:#x}")
            if not b0 & 0x80:
                raise ProtocolError("fragmented control frame")
            if length > 125:
                raise ProtocolError("control frame payload over 125 bytes")
        elif opcode > OP_BINARY:
            raise ProtocolError(f"unknown data opcode {opcode:#x}")
        if length >> 63:
            raise ProtocolError("frame length has the most significant bit set")
        return opcode

    def _message_end(self, opcode: int, payload: bytes) -> tuple:
        """The event of a whole extension message (opcodes 3..7 from :meth:`_check_header`)."""
        raise ProtocolError(f"unknown data opcode {opcode:#x}")

    def _start_message(self, opcode: int, length: int) -> None:
        self._msg_opcode = opcode
        self._msg_size = length
        self._msg_frames = 1
        self._msg_parts = []

    @staticmethod
    def _decode(decoder, payload: bytes, final: bool) -> str:
        try:
            return decoder.decode(payload, final)
        except UnicodeDecodeError:
            raise ProtocolError("invalid UTF-8 in text message", CloseCode.INVALID_DATA) from None

    def _check_partial_text(self, data, start: int, n: int, mask, opcode: int) -> None:
        """Validate the UTF-8 of a text frame still arriving, so bad input fails fast."""
        checked = self._partial_checked
        if n - start <= checked:
            return
        decoder = self._partial_decoder
        if decoder is None:
            decoder = _Utf8Decoder()
            if opcode == OP_CONT and self._msg_decoder is not None:
                decoder.setstate(self._msg_decoder.getstate())
            self._partial_decoder = decoder
        chunk = data[start + checked : n]
        if mask:
            shift = checked & 3
            chunk = apply_mask(chunk, mask[shift:] + mask[:shift])
        self._decode(decoder, bytes(chunk), False)
        self._partial_checked = n - start
