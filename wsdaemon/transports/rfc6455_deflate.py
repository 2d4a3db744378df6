"""An RFC 6455 connection that negotiated permessage-deflate (RFC 7692); chosen at the handshake.

Connections without the extension stay plain :class:`Rfc6455Connection` objects: their parser and
``send`` are untouched. This subclass swaps in the :class:`DeflateFrameParser`, compresses
outgoing messages of at least ``--compression-min-size`` bytes, shares one compressed frame of a
broadcast between every connection whose compressor holds no history, and drops its zlib state
when it closes.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

from ..proto.codes import OPEN, ConnState
from ..proto.deflate_frames import DeflateFrameParser, encode_compressed_frame
from ..proto.errors import ConnectionClosedError
from ..proto.http11 import Request
from ..proto.permessage_deflate import DeflateParams, DeflatePolicy, PerMessageDeflate
from ..proto.rfc6455 import OP_BINARY, OP_TEXT, FrameParser, encode_frame
from .host import TransportHost
from .rfc6455_connection import Rfc6455Connection


class SharedMessage:
    """One broadcast message for every compressing connection: the plain frame made once, and
    one compressed frame per compressor window, made when the first connection needs it."""

    __slots__ = ("opcode", "payload", "size", "plain", "frames", "compressed")

    def __init__(self, opcode: int, payload: bytes) -> None:
        self.opcode = opcode
        self.payload = payload
        self.size = len(payload)
        self.plain = encode_frame(opcode, payload)
        #: compressor window bits -> the framed compressed message.
        self.frames: dict[int, bytes] = {}
        #: the codec's cache (window bits -> deflated payload).
        self.compressed: dict[int, bytes] = {}


class CompressingFrames:
    """What every RFC 6455 connection that agreed permessage-deflate does alike, plain or carrying a
    session: the inflating parser, the ``Sec-WebSocket-Extensions`` answer, compressed data frames,
    and zlib state dropped at the close. The concrete class holds the ``deflate`` slot."""

    __slots__ = ()

    deflate: PerMessageDeflate

    def _new_parser(self, settings: Any) -> FrameParser:
        return DeflateFrameParser(
            self.deflate, settings.max_message_size, max_frames_per_message=settings.max_frames_per_message
        )

    @property
    def extensions_header(self) -> str:
        return self.deflate.params.response_header

    @property
    def compression(self) -> DeflateParams:
        """The agreed parameters: windows, context takeover both ways."""
        return self.deflate.params

    def _text(self, payload: bytes) -> bytes:
        """One text message's frame: compressed from ``--compression-min-size`` bytes on."""
        deflate = self.deflate
        if len(payload) < deflate.min_size:
            return encode_frame(OP_TEXT, payload)
        return encode_compressed_frame(OP_TEXT, deflate.compress(payload))

    def _binary(self, payload: bytes) -> bytes:
        deflate = self.deflate
        if len(payload) < deflate.min_size:
            return encode_frame(OP_BINARY, payload)
        return encode_compressed_frame(OP_BINARY, deflate.compress(payload))

    def _deliver_close(self, code: int, reason: str) -> None:
        super()._deliver_close(code, reason)  # type: ignore[misc]
        self.deflate.release()


class Rfc6455DeflateConnection(CompressingFrames, Rfc6455Connection):
    """A client that agreed permessage-deflate: ``compression`` holds the agreed parameters."""

    __slots__ = ("deflate",)

    #: A broadcast's encoding for these connections is a :class:`SharedMessage`, not a frame.
    wire_format = "rfc6455+deflate"

    def __init__(
        self,
        server: TransportHost,
        sock: Any,
        request: Request,
        subprotocol: str | None,
        params: DeflateParams,
        policy: DeflatePolicy,
    ) -> None:
        self.deflate = PerMessageDeflate(params, policy, max_message_size=server.settings.max_message_size)
        super().__init__(server, sock, request, subprotocol)

    # -- the application's API ---------------------------------------------------

    def send(
        self,
        message: str | bytes,
        *,
        key: Hashable | None = None,
        volatile: bool = False,
        compress: bool | None = None,
    ) -> None:
        if self.state != OPEN:
            raise ConnectionClosedError(f"connection is {ConnState(self.state).label}")
        if type(message) is str:
            opcode, payload = OP_TEXT, message.encode("utf-8")
        elif isinstance(message, (bytes, bytearray, memoryview)):
            opcode, payload = OP_BINARY, bytes(message)
        else:
            raise TypeError(f"send() takes str or bytes, not {type(message).__name__}")
        if volatile and self.backlogged:
            self.dropped += 1
            return
        deflate = self.deflate
        if compress is False or (compress is None and len(payload) < deflate.min_size):
            frame = encode_frame(opcode, payload)
        else:
            frame = encode_compressed_frame(opcode, deflate.compress(payload))
        if key is None:
            self.write(frame)
        else:
            self.write_keyed(frame, key)

    @classmethod
    def encode_message(cls, message: str | bytes) -> SharedMessage:  # type: ignore[override]
        if type(message) is str:
            return SharedMessage(OP_TEXT, message.encode("utf-8"))
        return SharedMessage(OP_BINARY, bytes(message))

    def send_encoded(self, encoded: SharedMessage) -> None:  # type: ignore[override]
        if self.state == OPEN:
            self.write(self._frame_of(encoded))

    def send_encoded_keyed(self, encoded: SharedMessage, key: Hashable) -> None:  # type: ignore[override]
        if self.state == OPEN:
            self.write_keyed(self._frame_of(encoded), key)

    def _frame_of(self, encoded: SharedMessage) -> bytes:
        """A broadcast's frame: the shared compressed one, unless our compressor has history to keep."""
        deflate = self.deflate
        if encoded.size < deflate.min_size:
            return encoded.plain
        if deflate.holds_context:
            return encode_compressed_frame(encoded.opcode, deflate.compress(encoded.payload))
        frame = encoded.frames.get(deflate.window_bits)
        if frame is None:
            data = deflate.compress_broadcast(encoded.payload, encoded.compressed)
            frame = encoded.frames[deflate.window_bits] = encode_compressed_frame(encoded.opcode, data)
        return frame
