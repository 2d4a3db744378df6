"""Octet-string helpers for the Python 3 port of Autobahn|Testsuite.

``py3port.py`` copies this file into the installed package as
``autobahntestsuite/_octets.py``; it is not upstream code.

The suite was written for Python 2, where a payload is a ``str`` of octets. After 2to3
the same literals (``'\\xfe' * 125``, ``chr(0x80)``, ...) are Python 3 ``str`` objects
whose code points are the octet values, i.e. latin-1 text. The port keeps that model
inside the suite, so that test cases compare what they expected with what they received
exactly as before, and converts only where the suite meets autobahn, which on Python 3
sends and receives ``bytes``:

- :class:`OctetSending` is a base class of ``fuzzing.FuzzingProtocol`` that turns
  every payload handed to autobahn's ``send*`` methods into ``bytes``;
- :func:`latin1` turns what autobahn received back into the suite's octet strings.
"""

import binascii

_BYTES_LIKE = (bytes, bytearray, memoryview)


def octets(value):
    """An octet string (``str`` with code points 0-255) as ``bytes``.

    ``bytes`` and ``None`` pass through unchanged. A ``str`` holding a code point
    above 255 cannot be a Python 2 octet string: it is an error in the port, so it
    raises instead of guessing an encoding.
    """
    if value is None or isinstance(value, bytes):
        return value
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    if isinstance(value, str):
        try:
            return value.encode("latin-1")
        except UnicodeEncodeError as e:
            raise TypeError(f"py3port: payload is not an octet string: {value[:40]!r}") from e
    raise TypeError(f"py3port: cannot send a {type(value).__name__} as a payload")


def latin1(value):
    """``bytes`` as the suite's octet string; anything else passes through."""
    if isinstance(value, _BYTES_LIKE):
        return bytes(value).decode("latin-1")
    return value


def report_text(value):
    """``bytes`` as text for a report (Python 2's json module read ``str`` as UTF-8)."""
    if isinstance(value, _BYTES_LIKE):
        return bytes(value).decode("utf-8", "replace")
    return value


def utf8_view(value):
    """An octet string holding UTF-8, shown as the text it encodes (for descriptions)."""
    return octets(value).decode("utf-8", "replace")


def hexlify(value):
    """``binascii.b2a_hex`` for octet strings and bytes, returning ``str``."""
    return binascii.b2a_hex(octets(value)).decode("ascii")


def json_default(value):
    """``default=`` hook for ``json.dumps`` of case results."""
    if isinstance(value, _BYTES_LIKE):
        return report_text(value)
    raise TypeError(f"py3port: {type(value).__name__} is not JSON serializable")


class OctetSending:
    """Base class of ``FuzzingProtocol``: payloads reach autobahn as ``bytes``.

    In the fuzzing protocols' MRO this class sits between ``FuzzingProtocol`` and
    autobahn's ``WebSocket*Protocol``, so ``super()`` is autobahn's method.
    """

    def sendFrame(
        self,
        opcode,
        payload=b"",
        fin=True,
        rsv=0,
        mask=None,
        payload_len=None,
        chopsize=None,
        sync=False,
    ):
        return super().sendFrame(opcode, octets(payload), fin, rsv, octets(mask), payload_len, chopsize, sync)

    def sendMessage(self, payload, *args, **kwargs):
        return super().sendMessage(octets(payload), *args, **kwargs)

    def sendMessageFrame(self, payload, *args, **kwargs):
        return super().sendMessageFrame(octets(payload), *args, **kwargs)

    def sendMessageFrameData(self, payload, *args, **kwargs):
        return super().sendMessageFrameData(octets(payload), *args, **kwargs)

    def sendPing(self, payload=None):
        return super().sendPing(octets(payload))

    def sendPong(self, payload=None):
        return super().sendPong(octets(payload))

    def sendCloseFrame(self, code=None, reasonUtf8=None, isReply=False):
        return super().sendCloseFrame(code, octets(reasonUtf8), isReply)

    def sendData(self, data, *args, **kwargs):
        return super().sendData(octets(data), *args, **kwargs)
