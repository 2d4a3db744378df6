"""The room registry: O(1) join and leave, empty rooms removed, callbacks, presence, publish's members."""

import logging

from wsdaemon.transports.rooms import Room, RoomRegistry


class Member:
    """What the registry needs of a connection: ``_rooms`` and ``user``."""

    def __init__(self, user):
        self.user = user
        self._rooms = None

    def __repr__(self):
        return f"<Member {self.user}>"


def registry(events=None):
    published = []

    def publish(name, message, exclude, key):
        members = reg.rooms[name].members if name in reg.rooms else {}
        published.append(([m.user for m in members if m is not exclude], message, key))
        return len(published[-1][0])

    def record(kind):
        return lambda conn, room: events.append((kind, conn.user, room)) if events is not None else None

    reg = RoomRegistry(publish, record("join"), record("leave"))
    reg.published = published
    return reg


def test_join_leave_and_empty_rooms_disappear():
    events = []
    reg = registry(events)
    a, b = Member("a"), Member("b")
    assert reg.join(a, "lobby") and reg.join(b, "lobby") and reg.join(a, "side")
    assert not reg.join(a, "lobby")  # already in it: no second event
    assert list(reg.names()) == ["lobby", "side"]
    assert reg.get("lobby").users == ["a", "b"] and len(reg.get("lobby")) == 2
    assert set(a._rooms) == {"lobby", "side"}
    assert reg.leave(a, "side") and not reg.leave(a, "side")
    assert list(reg.names()) == ["lobby"]
    reg.leave_all(b)
    reg.leave_all(a)
    assert list(reg.names()) == [] and not a._rooms and not b._rooms
    assert events == [
        ("join", "a", "lobby"),
        ("join", "b", "lobby"),
        ("join", "a", "side"),
        ("leave", "a", "side"),
        ("leave", "b", "lobby"),
        ("leave", "a", "lobby"),
    ]


def test_a_missing_room_is_empty_and_not_created():
    reg = registry()
    room = reg.get("nobody")
    assert isinstance(room, Room) and len(room) == 0 and list(room) == []
    assert room.publish("x") == 0
    assert list(reg.names()) == []


def test_room_publish_goes_through_the_servers_publish():
    reg = registry()
    a, b, c = Member("a"), Member("b"), Member("c")
    for m in (a, b, c):
        reg.join(m, "r")
    assert reg.get("r").publish("hi", exclude=b, key="pos") == 2
    assert reg.published == [(["a", "c"], "hi", "pos")]


def test_the_observer_hears_each_join_and_leave_with_the_rooms_first_and_last_member():
    heard = []

    class Observer:
        def joined(self, conn, room, first):
            heard.append(("joined", conn.user, room, first))

        def left(self, conn, room, last):
            heard.append(("left", conn.user, room, last))

    reg = registry()
    reg.observer = Observer()
    a, b = Member("a"), Member("b")
    reg.join(a, "r")
    reg.join(b, "r")
    reg.join(b, "r")  # already in it: not heard
    reg.leave(a, "r")
    reg.leave_all(b)
    assert heard == [
        ("joined", "a", "r", True),
        ("joined", "b", "r", False),
        ("left", "a", "r", False),
        ("left", "b", "r", True),
    ]


def test_iteration_is_a_copy_so_callbacks_may_change_membership():
    reg = registry()
    members = [Member(i) for i in range(5)]
    for m in members:
        reg.join(m, "r")
    for m in reg.get("r"):
        reg.leave(m, "r")
    assert list(reg.names()) == []


def test_an_error_in_a_callback_is_logged_and_membership_still_changes(caplog):
    def boom(conn, room):
        raise RuntimeError("callback failed")

    reg = RoomRegistry(lambda *a: 0, boom, boom)
    m = Member("m")
    with caplog.at_level(logging.ERROR, logger="wsdaemon.rooms"):
        assert reg.join(m, "r")
        assert reg.leave(m, "r")
    assert caplog.text.count("RuntimeError: callback failed") == 2
    assert "error in on_join" in caplog.text and "error in on_leave" in caplog.text
    assert list(reg.names()) == [] and not m._rooms


def test_room_names_are_strings():
    reg = registry()
    try:
        reg.join(Member("m"), 42)
    except TypeError:
        return
    raise AssertionError("a non-str room name was accepted")
