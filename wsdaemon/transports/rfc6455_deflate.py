"""An RFC 6455 connection that negotiated permessage-deflate (RFC 7692); chosen at the handshake.

Connections without the extension stay plain :class:`Rfc6455Connection` objects: their parser and
``send`` are untouched. This subclass swaps in the :class:`DeflateFrameParser`, compresses
outgoing messages of at least ``--compression-min-size`` bytes, shares one compressed frame of a
broadcast between every connection whose compressor holds no history, and drops its zlib state
when it closes.
"""

from __future__ import annotations

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


class Rfc6455DeflateConnection(Rfc6455Connection):
    """A client that agreed permessage-deflate: ``compression`` holds the agreed parameters."""

    __slots__ = ("deflate",)

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

    def _new_parser(self, settings: Any) -> FrameParser:
        return DeflateFrameParser(
            self.deflate, settings.max_message_size, max_frames_per_message=settings.max_frames_per_message
        )

    @property
    def extensions_header(self) -> str:  # type: ignore[override]
        return self.deflate.params.response_header

    @property
    def compression(self) -> DeflateParams:  # type: ignore[override]
        """The agreed parameters: windows, context takeover both ways."""
        return self.deflate.params

    # -- the application's API ---------------------------------------------------

    def send(self, message: str | bytes, *, compress: bool | None = None) -> None:
        if self.state != OPEN:
            raise ConnectionClosedError(f"connection is {ConnState(self.state).label}")
        if type(message) is str:
            opcode, payload = OP_TEXT, message.encode("utf-8")
        elif isinstance(message, (bytes, bytearray, memoryview)):
            opcode, payload = OP_BINARY, bytes(message)
        else:
            raise TypeError(f"send() takes str or bytes, not {type(message).__name__}")
        deflate = self.deflate
        if compress is False or (compress is None and len(payload) < deflate.min_size):
            self.write(encode_frame(opcode, payload))
        else:
            self.write(encode_compressed_frame(opcode, deflate.compress(payload)))

    @classmethod
    def encode_message(cls, message: str | bytes) -> SharedMessage:  # type: ignore[override]
        if type(message) is str:
            return SharedMessage(OP_TEXT, message.encode("utf-8"))
        return SharedMessage(OP_BINARY, bytes(message))

    def send_encoded(self, encoded: SharedMessage) -> None:  # type: ignore[override]
        """A broadcast: the shared compressed frame, unless our compressor has history to keep."""
        if self.state != OPEN:
            return
        deflate = self.deflate
        if encoded.size < deflate.min_size:
            self.write(encoded.plain)
        elif deflate.holds_context:
            self.write(encode_compressed_frame(encoded.opcode, deflate.compress(encoded.payload)))
        else:
            frame = encoded.frames.get(deflate.window_bits)
            if frame is None:
                data = deflate.compress_broadcast(encoded.payload, encoded.compressed)
                frame = encoded.frames[deflate.window_bits] = encode_compressed_frame(encoded.opcode, data)
            self.write(frame)

    # -- lifetime ----------------------------------------------------------------

    def _deliver_close(self, code: int, reason: str) -> None:
        super()._deliver_close(code, reason)
        self.deflate.release()
