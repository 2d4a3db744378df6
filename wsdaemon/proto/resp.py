"""RESP, the Redis protocol: commands encoded here, replies parsed by ``hiredis`` (sans-I/O).

``encode_command`` writes a command as a RESP array of bulk strings (the only
form Redis requires of clients); :class:`ReplyParser` wraps ``hiredis.Reader``,
which takes bytes and gives back whole replies, so the loop does all the I/O.
An error reply comes back as a :class:`ReplyError` value, not raised, so one
failed command of a pipeline does not disturb the replies after it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import hiredis

ReplyError = hiredis.ReplyError
ProtocolError = hiredis.ProtocolError
_INCOMPLETE = object()


def _bulk(arg: bytes | str | int | float) -> bytes:
    if type(arg) is bytes:
        data = arg
    elif type(arg) is str:
        data = arg.encode()
    elif isinstance(arg, (int, float)) and not isinstance(arg, bool):
        data = repr(arg).encode()
    elif isinstance(arg, (bytearray, memoryview)):
        data = bytes(arg)
    else:
        raise TypeError(f"a Redis argument is bytes, str, int or float, not {type(arg).__name__}")
    return b"$%d\r\n%s\r\n" % (len(data), data)


def encode_command(*args: bytes | str | int | float) -> bytes:
    """``encode_command("PUBLISH", "ch", b"x")`` -> ``*3\\r\\n$7\\r\\nPUBLISH\\r\\n...``."""
    if not args:
        raise ValueError("a command has at least its name")
    return b"*%d\r\n" % len(args) + b"".join(map(_bulk, args))


class ReplyParser:
    """Bytes in, replies out: ``feed(data)`` then iterate ``replies()`` for every complete one."""

    __slots__ = ("_reader", "_unanswered")

    def __init__(self) -> None:
        self._reader = hiredis.Reader(notEnoughData=_INCOMPLETE)
        self._unanswered = 0

    def feed(self, data: bytes) -> None:
        self._reader.feed(data)
        self._unanswered += len(data)

    def replies(self) -> Iterator[Any]:
        """Every complete reply fed so far; raises :class:`ProtocolError` on bytes that are not RESP."""
        gets = self._reader.gets
        while True:
            reply = gets()
            if reply is _INCOMPLETE:
                return
            self._unanswered = 0
            yield reply

    def pending(self) -> int:
        """At least the bytes fed but not yet part of a complete reply: fed since the last reply came
        out (what bounds a reply still arriving)."""
        return self._unanswered
