"""The WebSocket vocabulary every transport shares: close codes and connection states, once.

Long-polling and the hixie drafts report closes with the same RFC 6455 codes,
so the application sees one set of numbers whatever the transport.
"""

from __future__ import annotations

from enum import IntEnum


class CloseCode(IntEnum):
    """RFC 6455 section 7.4.1 close codes (the IANA registry's names, as websockets spells them)."""

    NORMAL_CLOSURE = 1000
    GOING_AWAY = 1001
    PROTOCOL_ERROR = 1002
    UNSUPPORTED_DATA = 1003
    #: Never on the wire: reported when a close frame carried no code.
    NO_STATUS_RCVD = 1005
    #: Never on the wire: reported when the connection ended without a closing handshake.
    ABNORMAL_CLOSURE = 1006
    INVALID_DATA = 1007
    POLICY_VIOLATION = 1008
    MESSAGE_TOO_BIG = 1009
    MANDATORY_EXTENSION = 1010
    INTERNAL_ERROR = 1011


def is_valid_close_code(code: int) -> bool:
    """Whether a peer may send ``code`` in a close: 1000-1003, 1007-1011, 3000-4999 (RFC 6455 7.4)."""
    return 1000 <= code <= 1003 or 1007 <= code <= 1011 or 3000 <= code <= 4999


class ConnState(IntEnum):
    """Where a connection is in its life, as the application sees it (same for every transport)."""

    CONNECTING = 0
    OPEN = 1
    CLOSING = 2
    CLOSED = 3

    @property
    def label(self) -> str:
        """The state as a word for messages: ``"open"``, ``"closing"``..."""
        return self.name.lower()


#: Module-level names for the hot paths (a global lookup instead of an attribute lookup), as plain
#: ints: a connection's ``state`` compared with them is an int comparison the interpreter
#: specializes, where an IntEnum member on either side takes the generic comparison.
CONNECTING, OPEN, CLOSING, CLOSED = map(int, ConnState)
