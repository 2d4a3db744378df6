"""Rooms: named sets of connections the application publishes to, with their users (presence).

The registry maps a room name to a :class:`Room`; each connection keeps the rooms
it is in (``conn._rooms``, name -> Room), so join and leave are O(1), a publish
walks only the room's members and a close leaves every room of that connection
without a scan of all connections. An empty room is removed. Publishing is
the server's (``publish``, passed in: local fan-out, and the broker when there
is one); a :class:`MembershipObserver` (the broker) hears of every join and
leave, and of a room's first and last local member.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Hashable, Iterator, KeysView
from typing import Any, Protocol

log = logging.getLogger("wsdaemon.rooms")

#: ``publish(room_name, message, exclude, key) -> count``: the server's publish.
Publish = Callable[[str, "str | bytes", Any, "Hashable | None"], int]


class MembershipObserver(Protocol):
    """Told of membership changes (the broker keeps subscriptions and presence with them)."""

    def joined(self, conn: Any, room: str, first: bool) -> None: ...

    def left(self, conn: Any, room: str, last: bool) -> None: ...


class Presence(list):
    """The users of a room; ``stale`` is True when part of it is the last view known of other nodes."""

    __slots__ = ("stale",)

    def __init__(self, users: Iterator[Any] | list[Any] = (), stale: bool = False) -> None:
        super().__init__(users)
        self.stale = stale


class Room:
    """One room: ``len(room)``, ``for conn in room``, ``conn in room``, ``room.publish(...)``, ``room.users``."""

    __slots__ = ("name", "members", "_publish")

    def __init__(self, name: str, publish: Publish) -> None:
        self.name = name
        #: The member connections in join order (a dict used as an ordered set).
        self.members: dict[Any, None] = {}
        self._publish = publish

    def __len__(self) -> int:
        return len(self.members)

    def __iter__(self) -> Iterator[Any]:
        return iter(list(self.members))  # a copy: a callback may change membership meanwhile

    def __contains__(self, conn: object) -> bool:
        return conn in self.members

    def publish(self, message: str | bytes, exclude: Any = None, key: Hashable | None = None) -> int:
        """Send ``message`` to every open member but ``exclude``; how many here got it (see Server.publish)."""
        return self._publish(self.name, message, exclude, key)

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
        publish: Publish,
        on_join: Callable[[Any, str], None] | None = None,
        on_leave: Callable[[Any, str], None] | None = None,
    ) -> None:
        self.rooms: dict[str, Room] = {}
        self._publish = publish
        self._on_join = on_join
        self._on_leave = on_leave
        #: The broker, when there is one (None: nothing is paid per join or leave).
        self.observer: MembershipObserver | None = None

    def names(self) -> KeysView[str]:
        """A live read-only view of the room names."""
        return self.rooms.keys()

    def get(self, name: str) -> Room:
        """The room called ``name``; an empty, unregistered one when nobody is in it."""
        room = self.rooms.get(name)
        return room if room is not None else Room(name, self._publish)

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
        first = room is None
        if first:
            room = self.rooms[name] = Room(name, self._publish)
        room.members[conn] = None
        rooms[name] = room
        if self.observer is not None:
            self.observer.joined(conn, name, first)
        self._notify(self._on_join, "on_join", conn, name)
        return True

    def leave(self, conn: Any, name: str) -> bool:
        """Take ``conn`` out of room ``name``; an empty room disappears. False if it was not in it."""
        rooms = conn._rooms
        room = rooms.pop(name, None) if rooms else None
        if room is None:
            return False
        del room.members[conn]
        last = not room.members
        if last and self.rooms.get(name) is room:
            del self.rooms[name]
        if self.observer is not None:
            self.observer.left(conn, name, last)
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
