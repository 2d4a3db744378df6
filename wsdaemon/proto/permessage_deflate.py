"""permessage-deflate (RFC 7692) without I/O: offer negotiation and per-message compression.

:func:`negotiate` reads a client's ``Sec-WebSocket-Extensions`` header and returns the
:class:`DeflateParams` we accept (with the response header text) or ``None``; a bad offer is
declined, never an error. :class:`PerMessageDeflate` compresses and inflates the messages of one
connection; its zlib objects exist only while they must, so an idle connection holds none when
no context takeover applies. :func:`compress_once` compresses a broadcast message once for many
connections.

Framing is the caller's job: RSV1 goes on the first frame of a compressed message only, never on
continuation or control frames.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass

from .codes import CloseCode
from .errors import ProtocolError

EXTENSION_NAME = "permessage-deflate"


#: The end of an empty stored block: a sync flush ends with it, the sender strips it and the
#: receiver puts it back (RFC 7692 §7.2.1, §7.2.2).
_TRAILER = b"\x00\x00\xff\xff"
#: Inflate in steps of at most this much output, so a bomb stops after ``limit + 1`` bytes.
_OUT_STEP = 64 * 1024
#: ... and feed zlib this much input at a time, so ``unconsumed_tail`` copies stay small.
_IN_STEP = 64 * 1024

_SERVER_NO_CONTEXT = "server_no_context_takeover"
_CLIENT_NO_CONTEXT = "client_no_context_takeover"
_SERVER_BITS = "server_max_window_bits"
_CLIENT_BITS = "client_max_window_bits"
_PARAM_NAMES = frozenset((_SERVER_NO_CONTEXT, _CLIENT_NO_CONTEXT, _SERVER_BITS, _CLIENT_BITS))


# --- memory ----------------------------------------------------------------


def deflate_memory(window_bits: int, mem_level: int) -> int:
    """Bytes a zlib compressor allocates: zconf.h's ``(1 << (windowBits+2)) + (1 << (memLevel+9))``.

    Plus about 6 KiB of state (measured with tracemalloc, zlib 1.2.13): 12 bits / memLevel 5 is
    32 KiB by the formula, 38 KiB measured; zlib's defaults (15 / 8) are 256 KiB, 262 KiB measured.
    """
    return (1 << (_compress_bits(window_bits) + 2)) + (1 << (mem_level + 9))


def inflate_memory(window_bits: int) -> int:
    """Bytes a zlib decompressor allocates: ``1 << windowBits`` of window plus about 7 KiB (zconf.h).

    The window is allocated on first use; 12 bits is 11 KiB, 15 bits 39 KiB.
    """
    return (1 << window_bits) + 7 * 1024


def _compress_bits(window_bits: int) -> int:
    # zlib refuses a raw deflate window of 8 bits (zlib issue 171; it turns 8 into 9 itself for
    # zlib streams), so 8 compresses with 9, as python-websockets and others do. That stays
    # within an 8-bit window: zlib never reaches back further than the window minus 262 bytes
    # (MAX_DIST in deflate.h), 250 bytes for 9 bits.
    return max(window_bits, 9)


# --- negotiation: header syntax (RFC 6455 §9.1, RFC 7230 §3.2.6, §7) -------


class ExtensionHeaderError(ValueError):
    """A ``Sec-WebSocket-Extensions`` value that breaks the RFC 6455 §9.1 grammar."""


@dataclass(frozen=True, slots=True)
class ExtensionOffer:
    """One element of an extension header: lower-cased name and ``(param, value or None)`` pairs."""

    name: str
    params: tuple[tuple[str, str | None], ...] = ()


_OWS = re.compile(r"[ \t]*")
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_QUOTED = re.compile(r'"((?:[\t \x21\x23-\x5b\x5d-\x7e\x80-\xff]|\\[\t \x21-\x7e\x80-\xff])*)"')
_QUOTED_PAIR = re.compile(r"\\(.)", re.DOTALL)


def parse_extensions(value: str) -> list[ExtensionOffer]:
    """Parse a header value (several header lines joined with commas are one value, RFC 7230 §3.2.2).

    Names are case-insensitive and returned lower-cased; quoted-string values are unescaped.
    Raises :class:`ExtensionHeaderError` on a syntax error.
    """
    offers: list[ExtensionOffer] = []
    pos, end = 0, len(value)
    while True:
        # Empty list elements are legal: ", , a" (RFC 7230 §7).
        pos = _OWS.match(value, pos).end()
        while pos < end and value[pos] == ",":
            pos = _OWS.match(value, pos + 1).end()
        if pos == end:
            return offers
        name, pos = _token(value, pos)
        params: list[tuple[str, str | None]] = []
        while True:
            pos = _OWS.match(value, pos).end()
            if pos == end or value[pos] == ",":
                break
            if value[pos] != ";":
                raise ExtensionHeaderError(f"expected ';' or ',' at offset {pos}")
            param, pos = _token(value, _OWS.match(value, pos + 1).end())
            param_value = None
            after = _OWS.match(value, pos).end()
            if after < end and value[after] == "=":
                param_value, pos = _param_value(value, _OWS.match(value, after + 1).end())
            params.append((param.lower(), param_value))
        offers.append(ExtensionOffer(name.lower(), tuple(params)))


def _token(value: str, pos: int) -> tuple[str, int]:
    match = _TOKEN.match(value, pos)
    if match is None:
        raise ExtensionHeaderError(f"expected a token at offset {pos}")
    return match.group(), match.end()


def _param_value(value: str, pos: int) -> tuple[str, int]:
    if value.startswith('"', pos):
        match = _QUOTED.match(value, pos)
        if match is None:
            raise ExtensionHeaderError(f"bad quoted-string at offset {pos}")
        return _QUOTED_PAIR.sub(r"\1", match.group(1)), match.end()
    return _token(value, pos)


# --- negotiation: choosing parameters (RFC 7692 §5, §7.1) ------------------


@dataclass(frozen=True, slots=True)
class DeflatePolicy:
    """What the server accepts and asks for. The defaults bound memory like python-websockets.

    ``server_max_window_bits`` = 12 and ``mem_level`` = 5 make our compressor 38 KiB instead of
    zlib's default 262 KiB (15 bits, memLevel 8), for a few percent of ratio on typical JSON;
    ``client_max_window_bits`` = 12 asks clients that allow it (Chrome does) for a 4 KiB window
    so our decompressor is 11 KiB, not 39 KiB. Context takeover stays on both ways (better ratio
    on small repetitive messages); turn ``server_no_context_takeover`` on to keep no compressor
    between messages and let every connection share :func:`compress_once` output.
    Messages shorter than ``compression_min_size`` are sent uncompressed: deflate gains nothing.
    """

    enabled: bool = True
    #: Our compressor's window (8..15), announced even when the client did not ask (§7.1.2.1).
    server_max_window_bits: int = 12
    #: The window we ask the client to compress with (8..15), when its offer allows (§7.1.2.2).
    client_max_window_bits: int = 12
    #: zlib memLevel (1..9) of our compressor: its hash table and buffers are ``1 << (mem_level+9)``.
    mem_level: int = 5
    #: zlib compression level (-1 = zlib's default, 6).
    level: int = zlib.Z_DEFAULT_COMPRESSION
    #: Declare server_no_context_takeover even unasked (RFC 7692 §7.1.1.1 allows it).
    server_no_context_takeover: bool = False
    #: Ask the client to reset its context per message (§7.1.1.2), so we keep no decompressor.
    client_no_context_takeover: bool = False
    compression_min_size: int = 64

    def __post_init__(self) -> None:
        for name in ("server_max_window_bits", "client_max_window_bits"):
            if not 8 <= getattr(self, name) <= 15:
                raise ValueError(f"{name} must be 8..15")
        if not 1 <= self.mem_level <= 9:
            raise ValueError("mem_level must be 1..9")
        if not -1 <= self.level <= 9:
            raise ValueError("level must be -1..9")
        if self.compression_min_size < 0:
            raise ValueError("compression_min_size must be >= 0")


DEFAULT_POLICY = DeflatePolicy()


@dataclass(frozen=True, slots=True)
class DeflateParams:
    """The parameters agreed for one connection, exactly as our response header states them.

    A window of ``None`` means the parameter is absent: that side may use 15 bits.
    """

    server_no_context_takeover: bool = False
    client_no_context_takeover: bool = False
    server_max_window_bits: int | None = None
    client_max_window_bits: int | None = None

    def __post_init__(self) -> None:
        for bits in (self.server_max_window_bits, self.client_max_window_bits):
            if bits is not None and not 8 <= bits <= 15:
                raise ValueError("window bits must be 8..15")

    @property
    def response_header(self) -> str:
        """The ``Sec-WebSocket-Extensions`` value of the 101 response."""
        parts = [EXTENSION_NAME]
        if self.server_no_context_takeover:
            parts.append(_SERVER_NO_CONTEXT)
        if self.client_no_context_takeover:
            parts.append(_CLIENT_NO_CONTEXT)
        if self.server_max_window_bits is not None:
            parts.append(f"{_SERVER_BITS}={self.server_max_window_bits}")
        if self.client_max_window_bits is not None:
            parts.append(f"{_CLIENT_BITS}={self.client_max_window_bits}")
        return "; ".join(parts)

    @property
    def compress_window_bits(self) -> int:
        """zlib window bits our compressor uses (an agreed 8 becomes 9, see :func:`deflate_memory`)."""
        return _compress_bits(self.server_max_window_bits or 15)

    @property
    def decompress_window_bits(self) -> int:
        """zlib window bits our decompressor uses: the client's agreed window, 15 if none."""
        return self.client_max_window_bits or 15


_WINDOW_BITS = re.compile(r"[89]|1[0-5]")


def _window_bits(value: str | None) -> int | None:
    # §7.1.2: a decimal integer 8..15 without leading zeros; a quoted "10" has been unquoted.
    if value is None or not _WINDOW_BITS.fullmatch(value):
        return None
    return int(value)


def accept_offer(offer: ExtensionOffer, policy: DeflatePolicy = DEFAULT_POLICY) -> DeflateParams | None:
    """The parameters to answer one offer with, or ``None`` to decline it (RFC 7692 §5.1, §7.1).

    Declined: another extension, an unknown or repeated parameter, a value on a
    no_context_takeover flag, a window that is not 8..15, server_max_window_bits without value.
    """
    if offer.name != EXTENSION_NAME:
        return None
    values: dict[str, str | None] = {}
    for name, value in offer.params:
        if name not in _PARAM_NAMES or name in values:
            return None
        values[name] = value
    if values.get(_SERVER_NO_CONTEXT) is not None or values.get(_CLIENT_NO_CONTEXT) is not None:
        return None

    # We may always narrow our own window; if the client named a limit we must answer <= it.
    server_bits: int | None = None
    if _SERVER_BITS in values:
        asked = _window_bits(values[_SERVER_BITS])
        if asked is None:
            return None
        server_bits = min(asked, policy.server_max_window_bits)
    elif policy.server_max_window_bits < 15:
        server_bits = policy.server_max_window_bits

    # We may name the client's window only if it offered the parameter, and never above its value.
    client_bits: int | None = None
    if _CLIENT_BITS in values:
        if values[_CLIENT_BITS] is None:
            client_bits = policy.client_max_window_bits
        else:
            asked = _window_bits(values[_CLIENT_BITS])
            if asked is None:
                return None
            client_bits = min(asked, policy.client_max_window_bits)

    return DeflateParams(
        # Asked for: we must agree to accept the offer. Unasked: allowed by §7.1.1.1.
        server_no_context_takeover=_SERVER_NO_CONTEXT in values or policy.server_no_context_takeover,
        # The client offered to reset anyway: taking it up lets us drop the decompressor.
        client_no_context_takeover=_CLIENT_NO_CONTEXT in values or policy.client_no_context_takeover,
        server_max_window_bits=server_bits,
        client_max_window_bits=client_bits,
    )


def negotiate(header: str | list[str] | None, policy: DeflatePolicy = DEFAULT_POLICY) -> DeflateParams | None:
    """Accept the first permessage-deflate offer we can honour, or ``None`` for no extension.

    ``header`` is the ``Sec-WebSocket-Extensions`` value or the list of its header lines. A header
    that breaks the grammar is ignored as a whole: we never fail a handshake over an extension.
    """
    if not policy.enabled or header is None:
        return None
    value = header if isinstance(header, str) else ", ".join(header)
    try:
        offers = parse_extensions(value)
    except ExtensionHeaderError:
        return None
    for offer in offers:
        params = accept_offer(offer, policy)
        if params is not None:
            return params
    return None


# --- per-message compression (RFC 7692 §7.2) -------------------------------


class DeflateError(ProtocolError):
    """A compressed message we cannot accept: close the connection with ``code`` and ``reason``."""

    code = CloseCode.INVALID_DATA

    def __init__(self, reason: str) -> None:
        super().__init__(reason, code=type(self).code)


class MessageTooBig(DeflateError):
    """The message inflates past ``max_message_size`` (close 1009); inflating stopped there."""

    code = CloseCode.MESSAGE_TOO_BIG


class DecompressionError(DeflateError):
    """zlib rejected the compressed data (close 1007)."""

    code = CloseCode.INVALID_DATA


def _new_compressor(window_bits: int, mem_level: int, level: int) -> zlib._Compress:
    return zlib.compressobj(level, zlib.DEFLATED, -_compress_bits(window_bits), mem_level)


def _deflate(compressor: zlib._Compress, payload: bytes) -> bytes:
    # A sync flush always ends with an empty stored block, 00 00 ff ff, which §7.2.1 removes.
    return (compressor.compress(payload) + compressor.flush(zlib.Z_SYNC_FLUSH))[:-4]


def compress_once(
    payload: bytes, window_bits: int = 12, *, mem_level: int = 5, level: int = zlib.Z_DEFAULT_COMPRESSION
) -> bytes:
    """Compress one message with a fresh compressor, for a broadcast framed once and sent to many.

    Valid for every peer whose agreed ``compress_window_bits`` is at least ``window_bits``. A
    connection whose own compressor keeps context must restart it after such a message: go
    through :meth:`PerMessageDeflate.compress_broadcast`, which does.
    """
    return _deflate(_new_compressor(window_bits, mem_level, level), payload)


class PerMessageDeflate:
    """Compress outgoing and inflate incoming messages of one connection.

    zlib objects are made on the first compressed message, not at the handshake, and dropped after
    each message when the agreed parameters forbid context takeover: an idle connection then holds
    only this object. ``max_message_size`` caps the inflated size of one message (``None``: no cap).
    """

    __slots__ = (
        "params",
        "policy",
        "max_message_size",
        "min_size",
        "window_bits",
        "_compressor",
        "_decompressor",
        "_fed",
        "_received",
    )

    def __init__(
        self,
        params: DeflateParams,
        policy: DeflatePolicy = DEFAULT_POLICY,
        *,
        max_message_size: int | None = 16 * 1024 * 1024,
    ) -> None:
        self.params = params
        self.policy = policy
        self.max_message_size = max_message_size
        #: Smallest message worth compressing (``policy.compression_min_size``), kept at hand
        #: for the per-recipient step of a broadcast.
        self.min_size = policy.compression_min_size
        #: Our compressor's zlib window: connections with the same one can share a broadcast.
        self.window_bits = params.compress_window_bits
        self._compressor: zlib._Compress | None = None
        self._decompressor: zlib._Decompress | None = None
        #: Whether the message being received has had a compressed byte, and its inflated size.
        self._fed = False
        self._received = 0

    # --- sending ---

    def should_compress(self, size: int) -> bool:
        """Whether a message of ``size`` bytes is worth compressing (``compression_min_size``)."""
        return size >= self.min_size

    def compress(self, payload: bytes) -> bytes:
        """The compressed payload of one whole message; frame it with RSV1 on the first frame."""
        compressor = self._compressor
        if compressor is None:
            compressor = _new_compressor(
                self.params.compress_window_bits, self.policy.mem_level, self.policy.level
            )
            if not self.params.server_no_context_takeover:
                self._compressor = compressor
        return _deflate(compressor, payload)

    def compress_broadcast(self, payload: bytes, cache: dict[int, bytes]) -> bytes:
        """:func:`compress_once` output for this connection, made once per window size in ``cache``.

        Pass the same empty dict for every recipient of one payload. Our context-takeover
        compressor, if any, restarts: the peer's window now holds bytes it never saw.
        """
        bits = self.window_bits
        data = cache.get(bits)
        if data is None:
            data = cache[bits] = compress_once(
                payload, bits, mem_level=self.policy.mem_level, level=self.policy.level
            )
        self._compressor = None
        return data

    @property
    def holds_context(self) -> bool:
        """True while our compressor keeps history: the next message needs this connection's own output."""
        return self._compressor is not None

    # --- receiving ---

    def decompress(self, data: bytes, fin: bool) -> bytes:
        """Inflate one frame of a compressed message; ``fin`` on its last frame.

        Raises :class:`MessageTooBig` once the message passes ``max_message_size`` (after at most
        one byte more of output) and :class:`DecompressionError` on bad data; either way the
        decompressor is gone and the connection must close with the exception's ``code``.
        """
        if data:
            self._fed = True
        try:
            chunks = self._inflate(data) if data else []
            # An empty message (no compressed byte at all) leaves zlib alone: 00 00 ff ff on its
            # own would start a stored block and garble the next message.
            if fin and self._fed:
                chunks += self._inflate(_TRAILER)
        except zlib.error as exc:
            self._end_message(release=True)
            raise DecompressionError(f"invalid compressed data: {exc}") from None
        except MessageTooBig:
            self._end_message(release=True)
            raise
        if fin:
            # A stream ended by a BFINAL block (§7.2.3.4) cannot go on: the next message starts a
            # new one. It will fail as 1007 if it refers to the old window, which we no longer have.
            decompressor = self._decompressor
            self._end_message(
                release=self.params.client_no_context_takeover
                or (decompressor is not None and decompressor.eof)
            )
        return b"".join(chunks)

    def _inflate(self, data: bytes) -> list[bytes]:
        decompressor = self._decompressor
        if decompressor is None:
            decompressor = self._decompressor = zlib.decompressobj(wbits=-self.params.decompress_window_bits)
        limit = self.max_message_size
        chunks: list[bytes] = []
        view = memoryview(data)
        pos, end = 0, len(view)
        full = False
        while not decompressor.eof:  # bytes after a BFINAL block are dropped (§7.2.3.4's 0x00)
            source: bytes | memoryview
            if decompressor.unconsumed_tail:
                source = decompressor.unconsumed_tail
            elif pos < end:
                source = view[pos : pos + _IN_STEP]
                pos += _IN_STEP
            elif full:
                source = b""  # the output was cut at ``want``: zlib may hold more of it
            else:
                break
            want = _OUT_STEP if limit is None else min(_OUT_STEP, limit - self._received + 1)
            chunk = decompressor.decompress(source, want)
            full = len(chunk) == want
            if chunk:
                self._received += len(chunk)
                if limit is not None and self._received > limit:
                    raise MessageTooBig(f"message inflates past {limit} bytes")
                chunks.append(chunk)
        return chunks

    def _end_message(self, release: bool) -> None:
        self._fed = False
        self._received = 0
        if release:
            self._decompressor = None

    # --- lifetime ---

    def release(self) -> None:
        """Drop both zlib objects, e.g. when the connection closes or an inflated message failed."""
        self._compressor = None
        self._end_message(release=True)

    @property
    def zlib_memory(self) -> int:
        """Estimated bytes of zlib state held right now, by zlib's formulas (0 when idle and reset)."""
        held = 0
        if self._compressor is not None:
            held += deflate_memory(self.params.compress_window_bits, self.policy.mem_level)
        if self._decompressor is not None:
            held += inflate_memory(self.params.decompress_window_bits)
        return held

    def __repr__(self) -> str:
        return f"PerMessageDeflate({self.params.response_header!r}, zlib_memory={self.zlib_memory})"
