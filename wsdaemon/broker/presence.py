"""Presence across nodes: this node's members kept in Redis, other nodes' members kept in view.

Each room has one sorted set in Redis, ``PREFIX:presence:ROOM``. A member is an
*entry*, ``["node", "conn", user]`` as compact JSON, scored with the time
(Redis's clock: the node learns its offset with ``TIME``) after which it no
longer counts. A node writes its entries on join, removes them on leave, and
every third of the TTL rewrites all of them with a fresh score (the heartbeat),
drops expired ones (``ZREMRANGEBYSCORE``) and reads the room's live entries
again. A node that dies stops beating, so its members fall out within the TTL.

What ``presence(room)`` answers is local: this node's members (exact) plus the
other nodes' entries as last seen — read when the room got its first local
member, changed by the join/leave events every node publishes on the room's
channel, and read afresh by every heartbeat. Nothing waits on Redis; while
Redis is away the view is kept and marked stale. For a room without local
members, ``fetch(room, callback)`` asks Redis with a bounded wait.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from typing import Any

from ..net.loop import EventLoop
from ..net.redis import LINK_LOST, RedisLink
from ..proto.resp import ReplyError
from ..transports.rooms import Presence

#: Heartbeat entries are written in ZADD commands of at most this many members.
ZADD_CHUNK = 500


def _user_json(user: Any) -> Any:
    try:
        json.dumps(user)
        return user
    except (TypeError, ValueError):
        return str(user)


class PresenceBook:
    """This node's entries and its view of the other nodes' entries, per room with local members."""

    def __init__(self, loop: EventLoop, link: RedisLink, prefix: str, node: str, ttl: float) -> None:
        self.loop = loop
        self.link = link
        self.prefix = prefix
        self.node = node
        self.ttl = ttl
        self._node_prefix = json.dumps([node])[:-1] + ","  # '["node",' — how our entries start
        #: Our entry per room per local member connection.
        self.entries: dict[str, dict[Any, bytes]] = {}
        #: Other nodes' live entries as last seen, entry -> user, per room with local members.
        self.remote: dict[str, dict[bytes, Any]] = {}
        #: Our entries removed while Redis was away: removed when it is back.
        self._left_while_down: list[tuple[str, bytes]] = []
        self._clock_offset = 0.0
        self.refreshed_at: dict[str, float] = {}

    def key(self, room: str) -> str:
        return f"{self.prefix}:presence:{room}"

    def _expiry_ms(self) -> int:
        return int((time.time() + self._clock_offset + self.ttl) * 1000)

    def _now_ms(self) -> int:
        return int((time.time() + self._clock_offset) * 1000)

    # -- this node's members -----------------------------------------------------

    def joined(self, conn: Any, room: str, first: bool) -> bytes:
        """Record ``conn`` in ``room``; returns its entry (for the join event)."""
        entry = json.dumps(
            [self.node, f"{id(conn):x}", _user_json(conn.user)], separators=(",", ":")
        ).encode()
        self.entries.setdefault(room, {})[conn] = entry
        if first:
            self.remote.setdefault(room, {})
        if self.link.ready:
            key = self.key(room)
            self.link.command("ZADD", key, self._expiry_ms(), entry)
            self.link.command("PEXPIRE", key, int(self.ttl * 2000))
            if first:
                self._read(room)
        return entry

    def left(self, conn: Any, room: str, last: bool) -> bytes | None:
        """Forget ``conn`` in ``room``; returns its entry (for the leave event)."""
        entries = self.entries.get(room)
        entry = entries.pop(conn, None) if entries is not None else None
        if last:
            self.entries.pop(room, None)
            self.remote.pop(room, None)
            self.refreshed_at.pop(room, None)
        if entry is not None:
            if self.link.ready:
                self.link.command("ZREM", self.key(room), entry)
            else:
                self._left_while_down.append((room, entry))
        return entry

    # -- the other nodes' members ------------------------------------------------

    def event(self, room: str, joined: bool, entry: bytes) -> None:
        """Another node's join or leave event on ``room``'s channel."""
        view = self.remote.get(room)
        if view is None or entry.startswith(self._node_prefix.encode()):
            return
        if joined:
            user = self._decode(entry)
            if user is not _NOT_AN_ENTRY:
                view[entry] = user
        else:
            view.pop(entry, None)

    def _read(self, room: str) -> None:
        """Ask Redis for the room's live entries; the reply replaces the view of other nodes."""
        self.link.command(
            "ZRANGEBYSCORE",
            self.key(room),
            self._now_ms(),
            "+inf",
            callback=lambda reply: self._seen(room, reply),
        )

    def _seen(self, room: str, reply: Any) -> None:
        if room not in self.remote or not isinstance(reply, list):
            return
        self.remote[room] = self.others(reply)
        self.refreshed_at[room] = self.loop.now

    def others(self, entries: Iterable[bytes]) -> dict[bytes, Any]:
        """Entries of other nodes, entry -> user."""
        mine = self._node_prefix.encode()
        view = {}
        for entry in entries:
            if not entry.startswith(mine):
                user = self._decode(entry)
                if user is not _NOT_AN_ENTRY:
                    view[entry] = user
        return view

    @staticmethod
    def _decode(entry: bytes) -> Any:
        try:
            node, conn, user = json.loads(entry)
        except (ValueError, TypeError):
            return _NOT_AN_ENTRY
        return user

    def view(self, room: str, local_users: list[Any]) -> Presence:
        """This node's users of ``room`` and the other nodes' as last seen."""
        remote = self.remote.get(room)
        users = local_users + list(remote.values()) if remote else local_users
        return Presence(users, stale=not self.link.ready)

    def fetch(
        self, room: str, local_users: list[Any], callback: Callable[[Presence], None], timeout: float
    ) -> None:
        """``callback(presence)`` once: Redis's answer, or after ``timeout`` the local view marked stale."""
        done = False

        def answer(presence: Presence) -> None:
            nonlocal done
            if not done:
                done = True
                timer.cancel()
                callback(presence)

        def replied(reply: Any) -> None:
            if reply is LINK_LOST or isinstance(reply, ReplyError) or not isinstance(reply, list):
                answer(_stale(self.view(room, local_users)))
            else:
                answer(Presence(local_users + list(self.others(reply).values())))

        timer = self.loop.call_later(timeout, lambda: answer(_stale(self.view(room, local_users))))
        if not self.link.command("ZRANGEBYSCORE", self.key(room), self._now_ms(), "+inf", callback=replied):
            self.loop.call_soon(answer, _stale(self.view(room, local_users)))

    # -- the heartbeat and Redis coming back --------------------------------------

    def set_clock(self, reply: Any) -> None:
        """``TIME``'s reply: how far Redis's clock is from ours (scores are in Redis's time)."""
        if isinstance(reply, list) and len(reply) == 2:
            self._clock_offset = int(reply[0]) + int(reply[1]) / 1e6 - time.time()

    def beat(self) -> None:
        """Rewrite every local entry with a fresh expiry, drop expired ones, read each room again."""
        if not self.link.ready:
            return
        left, self._left_while_down = self._left_while_down, []
        for room, entry in left:
            self.link.command("ZREM", self.key(room), entry)
        expiry, now = self._expiry_ms(), self._now_ms()
        for room, entries in self.entries.items():
            key = self.key(room)
            values = list(entries.values())
            for start in range(0, len(values), ZADD_CHUNK):
                args: list[Any] = ["ZADD", key]
                for entry in values[start : start + ZADD_CHUNK]:
                    args += (expiry, entry)
                self.link.command(*args)
            self.link.command("PEXPIRE", key, int(self.ttl * 2000))
            self.link.command("ZREMRANGEBYSCORE", key, "-inf", now)
            self._read(room)

    def remove_all(self) -> None:
        """At shutdown: take this node's entries out of Redis now, not after the TTL."""
        if not self.link.ready:
            return
        for room, entries in self.entries.items():
            if entries:
                self.link.command("ZREM", self.key(room), *entries.values())
        self.entries.clear()


class _NotAnEntry:
    pass


_NOT_AN_ENTRY = _NotAnEntry()


def _stale(presence: Presence) -> Presence:
    presence.stale = True
    return presence
