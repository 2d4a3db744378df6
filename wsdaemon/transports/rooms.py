"""Rooms: named sets of connections the application publishes to, with their users (presence).

The registry maps a room name to a :class:`Room`; each connection keeps the rooms
it is in (``conn._rooms``, name -> Room), so join and leave are O(1), a publish
walks only the room's members and a close leaves every room of that connection
without a scan of all connections. An empty room is removed. Encoding and
writing are the server's one fan-out function, passed in as ``fan_out``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Hashable, Iterator, KeysView
from typing import Any

log = logging.getLogger("wsdaemon.rooms")

#: ``fan_out(members, message, exclude, key) -> count``: the server's broadcast step.
FanOut = Callable[[Any, "str | bytes", Any, "Hashable | None"], int]


class Room:
    """One room: ``len(room)``, ``for conn in room``, ``conn in room``, ``room.publish(...)``, ``room.users``."""

    __slots__ = ("name", "members", "_fan_out")

    def __init__(self, name: str, fan_out: FanOut) -> None:
        self.name = name
        #: The member connections in join order (a dict used as an ordered set).
        self.members: dict[Any, None] = {}
        self._fan_out = fan_out

    def __len__(self) -> int:
        return len(self.members)

    def __iter__(self) -> Iterator[Any]:
        return iter(list(self.members))  # a copy: a callback may change membership meanwhile

    def __contains__(self, conn: object) -> bool:
        return conn in self.members

    def publish(self, message: str | bytes, exclude: Any = None, key: Hashable | None = None) -> int:
        """Send ``message`` to every open member but ``exclude``; how many got it (see Server.publish)."""
        return self._fan_out(self.members, message, exclude, key)

    @property
    def users(self) -> list[Any]:
        """The members' ``conn.user``, in join order."""
        return [conn.user for conn in self.members]

    def __repr__(self) -> str:
        return f"<Room {self.name!r} {len(self.members)} members>"


class RoomRegistry:
    """Every non-empty room by name; ``on_join`` / ``on_leave`` are the application's callbacks."""

    def __init__(
        self,
        fan_out: FanOut,
        on_join: Callable[[Any, str], None] | None = None,
        on_leave: Callable[[Any, str], None] | None = None,
    ) -> None:
        self.rooms: dict[str, Room] = {}
        self._fan_out = fan_out
        self._on_join = on_join
        self._on_leave = on_leave

    def names(self) -> KeysView[str]:
        """A live read-only view of the room names."""
        return self.rooms.keys()

    def get(self, name: str) -> Room:
        """The room called ``name``; an empty, unregistered one when nobody is in it."""
        room = self.rooms.get(name)
        return room if room is not None else Room(name, self._fan_out)

    def join(self, conn: Any, name: str) -> bool:
        """Put ``conn`` in room ``name`` (created on first join); False if it was in it already."""
        if type(name) is not str:
            raise TypeError(f"a room name is a str, not {type(name).__name__}")
        rooms = conn._rooms
        if rooms is None:
            rooms = conn._rooms = {}
        elif name in rooms:
            return False
        room = self.rooms.get(name)
        if room is None:
            room = self.rooms[name] = Room(name, self._fan_out)
        room.members[conn] = None
        rooms[name] = room
        self._notify(self._on_join, "on_join", conn, name)
        return True

    def leave(self, conn: Any, name: str) -> bool:
        """Take ``conn`` out of room ``name``; an empty room disappears. False if it was not in it."""
        rooms = conn._rooms
        room = rooms.pop(name, None) if rooms else None
        if room is None:
            return False
        del room.members[conn]
        if not room.members and self.rooms.get(name) is room:
            del self.rooms[name]
        self._notify(self._on_leave, "on_leave", conn, name)
        return True

    def leave_all(self, conn: Any) -> None:
        """Leave every room ``conn`` is in (its close does this)."""
        rooms = conn._rooms
        while rooms:
            self.leave(conn, next(iter(rooms)))

    def _notify(self, callback: Callable | None, where: str, conn: Any, name: str) -> None:
        if callback is None:
            return
        try:
            callback(conn, name)
        except Exception:
            log.exception("error in %s for %s, room %r", where, conn, name)
