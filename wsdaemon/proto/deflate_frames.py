"""RFC 6455 frames of a permessage-deflate connection (RFC 7692 §6): RSV1 in, RSV1 out.

:class:`DeflateFrameParser` is the :class:`~wsdaemon.proto.rfc6455.FrameParser` of a connection
that negotiated the extension; connections without it keep the plain parser, so the plain fast
path pays nothing for compression. A first data frame with RSV1 starts a compressed message; its
continuation frames (RSV1 clear) are collected as they are, then the message is inflated once
with the decompressed-size limit checked while inflating.
"""

from __future__ import annotations

from .codes import CloseCode
from .errors import ProtocolError
from .permessage_deflate import PerMessageDeflate
from .rfc6455 import OP_BINARY, OP_CONT, OP_TEXT, FrameParser, encode_frame

_RSV1 = 0x40
#: Internal opcodes of a compressed text and binary message (the unused data opcodes 3 and 4).
OP_TEXT_DEFLATED = 0x3
OP_BINARY_DEFLATED = 0x4


def encode_compressed_frame(opcode: int, data: bytes) -> bytes:
    """One unfragmented frame with RSV1 set: ``data`` is the deflated payload, tail stripped."""
    return encode_frame(opcode | _RSV1, data)


class DeflateFrameParser(FrameParser):
    """A FrameParser that accepts RSV1 on the first frame of a data message and inflates it.

    RSV1 on a continuation or control frame, and RSV2/RSV3 anywhere, stay errors (1002). Too much
    inflated data is 1009 (:class:`~wsdaemon.proto.permessage_deflate.MessageTooBig`), bad
    deflate data and invalid UTF-8 in inflated text are 1007.
    """

    __slots__ = ("deflate",)

    def __init__(
        self,
        deflate: PerMessageDeflate,
        max_message_size: int = 16 * 1024 * 1024,
        require_mask: bool = True,
        max_frames_per_message: int = 100_000,
    ) -> None:
        super().__init__(max_message_size, require_mask, max_frames_per_message)
        #: The connection's codec; its ``max_message_size`` bounds the inflated size.
        self.deflate = deflate

    def _check_header(self, b0: int, opcode: int, length: int) -> int:
        if b0 & 0x70 == _RSV1:
            if opcode == OP_TEXT or opcode == OP_BINARY:
                super()._check_header(b0 & ~_RSV1, opcode, length)
                return OP_TEXT_DEFLATED if opcode == OP_TEXT else OP_BINARY_DEFLATED
            if opcode == OP_CONT:
                raise ProtocolError("RSV1 set on a continuation frame")
            if opcode & 0x08:
                raise ProtocolError("RSV1 set on a control frame")
        return super()._check_header(b0, opcode, length)

    def _message_end(self, opcode: int, payload: bytes) -> tuple:
        if opcode != OP_TEXT_DEFLATED and opcode != OP_BINARY_DEFLATED:
            return super()._message_end(opcode, payload)
        data = self.deflate.decompress(payload, True)
        if opcode == OP_BINARY_DEFLATED:
            return (OP_BINARY, data)
        try:
            return (OP_TEXT, data.decode("utf-8"))
        except UnicodeDecodeError:
            raise ProtocolError("invalid UTF-8 in text message", CloseCode.INVALID_DATA) from None
