"""The arena: a small multiplayer game on rooms, presence, conflated sends and workers.

    wsdaemon run --app wsdaemon.apps.arena:app --workers 2

then open http://127.0.0.1:8081/arena (``?name=NAME``; ``?transport=long-polling`` forces the
fallback). Each player moves a dot; the clients send their positions, the server publishes the
room's state at 20 Hz under the conflation key ``"state"`` (a slow client gets the newest tick,
not a backlog); bots chase the nearest player along paths the pathfinding task finds in a worker
(a straight-line chase without workers); chat lines are unkeyed, so none is ever dropped.
docs/arena.md describes the messages.
"""

from __future__ import annotations

import itertools
import json
import logging
import random
import time
from collections import deque
from pathlib import Path
from typing import Any

from ...application import Application
from ...proto.errors import Reject
from ...tasks import NoWorkers, TaskError
from .. import pathfind
from .world import HEIGHT, UNIT, WIDTH, World

log = logging.getLogger("wsdaemon.app.arena")

app = Application("arena")
ROOM = "arena"
TICK = 0.05  # 20 Hz
MAX_NAME = 24
MAX_CHAT = 200
CHAT_BURST, CHAT_WINDOW = 10, 5.0  # at most 10 chat lines per 5 s per player

#: The pathfinding demo's A* task, declared again under this application (its workers import this module).
find_path = app.task(name="find_path", idempotent=True, timeout=5)(pathfind.find_path.fn)

_ids = itertools.count(1)
_ADJECTIVES = ("quick", "lazy", "brave", "sly", "calm", "wild", "shy", "bold")
_ANIMALS = ("fox", "owl", "cat", "yak", "emu", "eel", "bee", "elk")


@app.on_connect
def identify(request: Any) -> dict:
    """The player a request belongs to (``conn.user``): ``?name=`` or a random one; 400 for a bad name."""
    name = request.query.get("name")
    if name is None:
        name = f"{random.choice(_ADJECTIVES)}-{random.choice(_ANIMALS)}"
    name = name.strip()
    if not 1 <= len(name) <= MAX_NAME or not name.isprintable():
        raise Reject(400, f"name must be 1 to {MAX_NAME} printable characters")
    return {"id": next(_ids), "name": name}


class Arena:
    """The running game: the world, the 20 Hz tick, and the room's messages."""

    def __init__(self, server: Any) -> None:
        self.server = server
        self.world = World()
        self.ticks = 0
        self.chat_lines = 0
        self.via: dict[int, str] = {}  # player id -> transport, for the presence list
        self._last = time.monotonic()
        self._timer = server.call_every(TICK, self.tick)

    def stop(self) -> None:
        self._timer.cancel()

    # -- connections -------------------------------------------------------------------

    def joined(self, conn: Any) -> None:
        player = self.world.add_player(conn.user["id"], conn.user["name"])
        self.via[player.id] = conn.protocol
        conn.join(ROOM)
        hello = {
            "t": "hello",
            "id": player.id,
            "name": player.name,
            "x": player.x,
            "y": player.y,
            "w": WIDTH,
            "h": HEIGHT,
            "unit": UNIT,
            "cells": self.world.cells_b64,
            "bots": "straight line" if self.world.straight else "paths from workers",
        }
        conn.send(_json(hello))
        conn.send(self.world.snapshot(self.ticks), key="state")
        self.publish_presence()

    def resumed(self, conn: Any) -> None:
        log.info("arena: %s resumed over %s", conn.user["name"], conn.protocol)
        self.via[conn.user["id"]] = conn.protocol
        conn.send(self.world.snapshot(self.ticks), key="state")
        self.publish_presence()

    def left(self, conn: Any) -> None:
        pid = conn.user["id"]
        self.world.remove_player(pid)
        self.via.pop(pid, None)
        self.publish_presence()

    def message(self, conn: Any, data: str | bytes) -> None:
        doc = None
        if isinstance(data, str):
            try:
                doc = json.loads(data)
            except (ValueError, RecursionError):
                doc = None
        kind = doc.get("t") if isinstance(doc, dict) else None
        if kind == "pos":
            try:
                self.world.move_player(conn.user["id"], doc.get("x"), doc.get("y"))
            except ValueError as exc:
                self.refuse(conn, f"bad position: {exc}")
        elif kind == "chat":
            self.chat(conn, doc.get("text"))
        else:
            self.refuse(conn, 'expected JSON {"t": "pos" | "chat", ...}')

    def refuse(self, conn: Any, reason: str) -> None:
        log.warning("arena: closing %s: %s", conn.user["name"], reason)
        conn.close(1008, reason[:120])

    def chat(self, conn: Any, text: Any) -> None:
        if not isinstance(text, str) or not 1 <= len(text.strip()) <= MAX_CHAT:
            conn.send(_json({"t": "error", "text": f"a chat line is 1 to {MAX_CHAT} characters"}))
            return
        recent = conn.data.setdefault("chat", deque(maxlen=CHAT_BURST))
        now = time.monotonic()
        if len(recent) == CHAT_BURST and now - recent[0] < CHAT_WINDOW:
            conn.send(_json({"t": "error", "text": f"at most {CHAT_BURST} lines per {CHAT_WINDOW:g} s"}))
            return
        recent.append(now)
        user = conn.user
        self.chat_lines += 1
        line = {
            "t": "chat",
            "n": self.chat_lines,
            "id": user["id"],
            "name": user["name"],
            "text": text.strip(),
        }
        self.server.publish(ROOM, _json(line))  # unkeyed: never replaced, never dropped

    # -- the tick ----------------------------------------------------------------------

    def tick(self) -> None:
        now = time.monotonic()
        dt, self._last = min(now - self._last, 0.25), now
        catches = self.world.step(dt, self.plan)
        if catches:
            self.publish_presence()
        if self.world.changed and self.world.players:
            self.ticks += 1
            self.server.publish(ROOM, self.world.snapshot(self.ticks), key="state")

    def publish_presence(self) -> None:
        players = []
        for user in self.server.presence(ROOM):
            player = self.world.players.get(user["id"])
            if player is not None:
                players.append(
                    {
                        "id": player.id,
                        "name": player.name,
                        "via": self.via.get(player.id, ""),
                        "caught": player.caught,
                    }
                )
        players.sort(key=lambda p: p["id"])
        self.server.publish(ROOM, _json({"t": "who", "players": players}), key="presence")

    def plan(self, index: int, start: int, goal: int) -> bool:
        """Ask a worker for a bot's path; without a pool, switch the bots to a straight-line chase."""
        try:
            find_path.submit(
                WIDTH,
                HEIGHT,
                self.world.costs_for(index),
                start=start,
                goal=goal,
                callback=lambda future: self.planned(index, future),
            )
        except NoWorkers:
            log.info("arena: no worker pool (--workers N), so the bots chase in a straight line")
            self.world.straight = True
            return False
        except TaskError as exc:  # the queue is full: this bot asks again at its next turn
            log.debug("arena: no path for bot %d now: %s", index, exc.message)
            return False
        return True

    def planned(self, index: int, future: Any) -> None:
        try:
            path = future.result()["path"]
        except TaskError as exc:
            log.warning("arena: path search for bot %d failed: %s: %s", index, exc.type, exc.message)
            path = None
        self.world.set_path(index, path)


def _json(doc: dict) -> str:
    return json.dumps(doc, separators=(",", ":"))


_arena: Arena | None = None


@app.on_start
def started(server: Any) -> None:
    global _arena
    _arena = Arena(server)


@app.on_stop
def stopped(server: Any) -> None:
    if _arena is not None:
        _arena.stop()


@app.on_open
def opened(conn: Any) -> None:
    conn.data = {}
    _arena.joined(conn)


@app.on_message
def message(conn: Any, data: str | bytes) -> None:
    _arena.message(conn, data)


@app.on_resume
def resumed(conn: Any) -> None:
    """The page's session came back (perhaps over another transport): fresh state and player list."""
    _arena.resumed(conn)


@app.on_close
def closed(conn: Any, code: int, reason: str) -> None:
    _arena.left(conn)


_STATIC = Path(__file__).with_name("static")
app.static("/arena-files", "static")
PAGE = (_STATIC / "arena.html").read_text(encoding="utf-8")


@app.route("/arena")
def page(request: Any) -> str:
    """The game's page; its script is /arena-files/arena.js and the daemon's /wsdaemon.js."""
    return PAGE
