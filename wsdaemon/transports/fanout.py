"""The one fan-out of broadcast and publish: a message encoded once per wire format, the same bytes to all."""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from typing import Any

_NOT_ENCODED = object()


def fan_out(
    connections: Iterable[Any],
    message: str | bytes,
    exclude: Any = None,
    key: Hashable | None = None,
) -> int:
    """Write ``message`` to every open connection but ``exclude``; how many got it.

    Each transport class encodes it once (``encode_message``, shared by classes of
    one ``wire_format``); the writes are corked, so they leave at the end of the
    loop iteration. ``key`` conflates (``send_encoded_keyed``). A transport that
    cannot carry the message (binary to a hixie client) is skipped.
    """
    encoded: dict[type | str, Any] = {}
    count = 0
    for conn in list(connections):  # a copy: a send can close a slow consumer meanwhile
        if conn is exclude or not conn.open:
            continue
        cls = type(conn)
        frame = encoded.get(cls, _NOT_ENCODED)
        if frame is _NOT_ENCODED:  # first of its class: encoded once per wire format
            wire = cls.wire_format
            frame = encoded.get(wire, _NOT_ENCODED)
            if frame is _NOT_ENCODED:
                frame = encoded[wire] = cls.encode_message(message)
            encoded[cls] = frame
        if frame is None:
            continue
        if key is None:
            conn.send_encoded(frame)
        else:
            conn.send_encoded_keyed(frame, key)
        count += 1
    return count
