"""Stand-in for issue 14's rooms API while it is not on this branch's base; delete once `rooms`
is merged. Each function uses the real API when the server or connection has it."""

from __future__ import annotations

from typing import Any

_members: dict[str, set[Any]] = {}


def join(conn: Any, room: str) -> None:
    if hasattr(conn, "join"):
        conn.join(room)
    else:
        _members.setdefault(room, set()).add(conn)


def leave_all(conn: Any) -> None:
    if not hasattr(conn, "join"):
        for members in _members.values():
            members.discard(conn)


def publish(server: Any, room: str, message: str, exclude: Any = None, key: str | None = None) -> None:
    if hasattr(server, "publish"):
        server.publish(room, message, exclude=exclude, key=key)
    else:
        server.broadcast(message, connections=_members.get(room, ()), exclude=exclude)


def send(conn: Any, message: str, key: str | None = None) -> None:
    if key is not None and hasattr(conn, "join"):
        conn.send(message, key=key)
    else:
        conn.send(message)


def presence(server: Any, room: str) -> list[Any]:
    if hasattr(server, "presence"):
        return list(server.presence(room))
    return [user_of(conn) for conn in _members.get(room, ()) if conn.open]


def user_of(conn: Any) -> Any:
    return conn.user if hasattr(conn, "user") else conn.data["user"]
