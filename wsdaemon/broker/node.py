"""This daemon as one node of several joined through Redis pub/sub (``--broker``).

Two :class:`~wsdaemon.net.redis.RedisLink` connections in the daemon's own loop:
one for commands (``PUBLISH``, presence), one subscribed. Routing is
Centrifugo's, not the broadcast-everything of Socket.IO's Redis adapter: a node
subscribes to a room's channel only while it has a local member of that room
(the registry tells it of a room's first and last member), so what a node
receives grows with its own rooms, not with the cluster's. Every node subscribes
to the one broadcast channel.

A publication is published once (``PUBLISH PREFIX:room:NAME envelope``) with
its origin node in the envelope; the origin delivered it locally already and
drops its own copy; every other node with members encodes it once per wire
format and writes it to them. While Redis is away, local delivery goes on,
publications wait in the command link's bounded buffer and past it are dropped
and counted (a log line a second says how many); when Redis is back the links
re-subscribe and re-enter presence by themselves.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections.abc import Callable, Hashable
from typing import Any

from ..net.loop import EventLoop, TimerHandle
from ..net.redis import LinkState, RedisLink, resolve
from ..proto.broker_envelope import (
    JOIN,
    LEAVE,
    TEXT,
    EnvelopeError,
    decode_envelope,
    encode_envelope,
    encode_message,
)
from ..proto.redis_url import RedisAddress, parse_redis_url
from ..proto.resp import encode_command
from ..settings import Settings
from ..transports.rooms import Presence, RoomRegistry
from .presence import PresenceBook

log = logging.getLogger("wsdaemon.broker")

#: SUBSCRIBE and UNSUBSCRIBE name at most this many channels per command.
CHANNEL_CHUNK = 1000

#: ``deliver(room or None for a broadcast, message, key) -> local receivers``: the server's fan-out.
Deliver = Callable[["str | None", "str | bytes", "str | None"], int]


class Broker:
    """Rooms, broadcast and presence shared with the other daemons on the same Redis and prefix."""

    def __init__(
        self,
        loop: EventLoop,
        settings: Settings,
        rooms: RoomRegistry,
        deliver: Deliver,
        local_users: Callable[[str], list[Any]],
    ) -> None:
        self.loop = loop
        self.address: RedisAddress = parse_redis_url(settings.broker)
        self.prefix = settings.broker_prefix
        #: This node's id: unique per process start (host, pid, a random part).
        self.node = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._origin = self.node.encode()
        self._rooms = rooms
        self._deliver = deliver
        self._local_users = local_users
        self._room_channel_prefix = f"{self.prefix}:room:".encode()
        self.broadcast_channel = f"{self.prefix}:broadcast".encode()
        resolved = resolve(self.address)
        self.commands = RedisLink(
            loop,
            self.address,
            name="commands",
            max_buffer=settings.broker_buffer,
            on_ready=self._commands_ready,
            resolved=resolved,
        )
        self.subscriber = RedisLink(
            loop,
            self.address,
            name="subscriber",
            max_buffer=settings.broker_buffer,
            on_ready=self._subscriber_ready,
            on_push=self._pushed,
            keep_queue=False,
            max_reply=2 * settings.max_message_size + 65536,
            resolved=resolved,
        )
        self.presence_book = PresenceBook(
            loop, self.commands, self.prefix, self.node, settings.broker_presence_ttl
        )
        #: Counters for /status and /metrics.
        self.published = 0
        self.received = 0
        self.dropped = 0
        self.foreign = 0
        self._dropped_logged = 0
        self._timers: list[TimerHandle] = []

    # -- life --------------------------------------------------------------------

    def start(self) -> None:
        log.info("node %s on %s, prefix %r", self.node, self.address, self.prefix)
        self._rooms.observer = self
        self.commands.start()
        self.subscriber.start()
        ttl = self.presence_book.ttl
        self._timers.append(self.loop.call_every(ttl / 3, self.presence_book.beat))
        self._timers.append(self.loop.call_every(1.0, self._log_dropped))

    def reload(self, settings: Settings, old: Settings) -> None:
        self.commands.max_buffer = self.subscriber.max_buffer = settings.broker_buffer

    def shutdown(self) -> None:
        self.presence_book.remove_all()

    def close(self) -> None:
        for timer in self._timers:
            timer.cancel()
        self._log_dropped()
        self._rooms.observer = None
        self.subscriber.close()
        self.commands.close(flush_timeout=0.5)

    @property
    def up(self) -> bool:
        return self.commands.ready and self.subscriber.ready

    def stats(self) -> dict[str, Any]:
        """The broker's part of ``/status``."""
        return {
            "node": self.node,
            "redis": str(self.address),
            "commands": self.commands.state.value,
            "subscriber": self.subscriber.state.value,
            "publications_sent": self.published,
            "publications_received": self.received,
            "publications_dropped": self.dropped,
            "buffered_bytes": self.commands.buffered,
            "subscribed_rooms": len(self._rooms.rooms),
        }

    # -- publishing --------------------------------------------------------------

    def publish(self, room: str, message: str | bytes, key: Hashable | None = None) -> None:
        """Send a room publication to the other nodes (the caller delivered it here)."""
        self._send(self._room_channel_prefix + room.encode(), message, key)

    def broadcast(self, message: str | bytes) -> None:
        """Send a broadcast to the other nodes (the caller delivered it here)."""
        self._send(self.broadcast_channel, message, None)

    def _send(self, channel: bytes, message: str | bytes, key: Hashable | None) -> None:
        envelope = encode_message(
            self._origin, message, key if key is None or type(key) is str else repr(key)
        )
        if self.commands.send_encoded(encode_command("PUBLISH", channel, envelope)):
            self.published += 1
        else:
            self.dropped += 1

    # -- membership (the registry's observer) ------------------------------------

    def joined(self, conn: Any, room: str, first: bool) -> None:
        if first and self.subscriber.ready:
            self.subscriber.command("SUBSCRIBE", self._room_channel_prefix + room.encode())
        entry = self.presence_book.joined(conn, room, first)
        if self.commands.ready:
            self.commands.send_encoded(
                encode_command(
                    "PUBLISH",
                    self._room_channel_prefix + room.encode(),
                    encode_envelope(JOIN, self._origin, entry),
                )
            )

    def left(self, conn: Any, room: str, last: bool) -> None:
        if last and self.subscriber.ready:
            self.subscriber.command("UNSUBSCRIBE", self._room_channel_prefix + room.encode())
        entry = self.presence_book.left(conn, room, last)
        if entry is not None and self.commands.ready:
            self.commands.send_encoded(
                encode_command(
                    "PUBLISH",
                    self._room_channel_prefix + room.encode(),
                    encode_envelope(LEAVE, self._origin, entry),
                )
            )

    def presence(self, room: str) -> Presence:
        """This node's users of ``room`` and the other nodes' as last seen (``.stale`` while Redis is away)."""
        return self.presence_book.view(room, self._local_users(room))

    def fetch_presence(self, room: str, callback: Callable[[Presence], None], timeout: float) -> None:
        """Ask Redis for ``room``'s presence; ``callback`` gets it, or the stale view after ``timeout``."""
        self.presence_book.fetch(room, self._local_users(room), callback, timeout)

    # -- the links coming up, and what the subscriber link receives --------------

    def _commands_ready(self) -> None:
        self.commands.command("TIME", callback=self.presence_book.set_clock)
        self.presence_book.beat()

    def _subscriber_ready(self) -> None:
        channels = [self.broadcast_channel] + [
            self._room_channel_prefix + r.encode() for r in self._rooms.rooms
        ]
        for start in range(0, len(channels), CHANNEL_CHUNK):
            self.subscriber.command("SUBSCRIBE", *channels[start : start + CHANNEL_CHUNK])

    def _pushed(self, reply: Any) -> None:
        if type(reply) is not list or len(reply) != 3 or reply[0] != b"message":
            return  # subscribe/unsubscribe confirmations and pongs
        channel, data = reply[1], reply[2]
        try:
            envelope = decode_envelope(data)
        except EnvelopeError:
            self.foreign += 1
            return
        if envelope.origin == self._origin:
            return
        if channel == self.broadcast_channel:
            room = None
        elif channel.startswith(self._room_channel_prefix):
            room = channel[len(self._room_channel_prefix) :].decode(errors="replace")
        else:
            return
        kind = envelope.kind
        if kind == JOIN or kind == LEAVE:
            if room is not None:
                self.presence_book.event(room, kind == JOIN, envelope.payload)
            return
        self.received += 1
        payload = envelope.payload
        if kind == TEXT:
            try:
                message: str | bytes = payload.decode()
            except UnicodeDecodeError:
                self.foreign += 1
                return
        else:
            message = payload
        self._deliver(room, message, envelope.key)

    def _log_dropped(self) -> None:
        new = self.dropped - self._dropped_logged
        if new:
            self._dropped_logged = self.dropped
            state = "away" if self.commands.state is not LinkState.READY else "slow"
            log.warning(
                "dropped %d publications in the last second (%d in all): Redis is %s and the "
                "%d-byte buffer is full",
                new,
                self.dropped,
                state,
                self.commands.max_buffer,
            )
