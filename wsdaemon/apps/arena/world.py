"""The arena's world, without sockets or timers: a walled grid, the players' dots where their
clients put them, and bots that follow planned paths towards the nearest player.

Positions are integers in hundredths of a cell (``UNIT``) so that a tick's JSON stays short.
"""

from __future__ import annotations

import base64
import json
import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field

UNIT = 100
WIDTH, HEIGHT = 40, 28
BOT_SPEED = 3.5 * UNIT  # per second; players move at 8 cells/s (the page's PLAYER_SPEED)
CATCH_RADIUS = 0.6 * UNIT
CATCH_PAUSE = 2.0  # seconds a bot rests after catching someone
PLAN_INTERVAL = 0.5  # seconds between two path requests of one bot
CROWD_COST = 9  # cost of entering a cell at or next to another bot (floor costs 1)
BOT_STARTS = ((20, 13), (27, 6), (12, 22))
SPAWNS = ((3, 3), (36, 3), (3, 24), (36, 24), (14, 3), (25, 24))
#: Walls inside the border, as (x, y, width, height) in cells.
WALLS = (
    (8, 5, 1, 8),
    (8, 17, 1, 6),
    (16, 10, 8, 1),
    (16, 17, 8, 1),
    (31, 4, 1, 9),
    (31, 16, 1, 8),
    (4, 13, 2, 2),
    (20, 3, 2, 2),
    (20, 23, 2, 2),
    (35, 13, 2, 2),
)

#: ``plan(bot_index, start_cell, goal_cell) -> bool``: True when a path was requested (it comes
#: back through :meth:`World.set_path`), False when not (the bot asks again later).
Planner = Callable[[int, int, int], bool]


def build_cells() -> bytes:
    """The grid row by row: 0 is a wall, 1 floor (the pathfinding task's cost of entering a cell)."""
    cells = bytearray([1] * (WIDTH * HEIGHT))
    for x in range(WIDTH):
        cells[x] = cells[(HEIGHT - 1) * WIDTH + x] = 0
    for y in range(HEIGHT):
        cells[y * WIDTH] = cells[y * WIDTH + WIDTH - 1] = 0
    for wx, wy, ww, wh in WALLS:
        for y in range(wy, wy + wh):
            for x in range(wx, wx + ww):
                cells[y * WIDTH + x] = 0
    return bytes(cells)


@dataclass
class Player:
    id: int
    name: str
    x: int
    y: int
    caught: int = 0


@dataclass
class Bot:
    x: int
    y: int
    path: list[int] = field(default_factory=list)
    planning: bool = False
    next_plan: float = 0.0
    resting_until: float = 0.0


class World:
    """Players, bots and the grid; :meth:`step` advances the bots, :meth:`snapshot` encodes a tick."""

    def __init__(self, bots: int = len(BOT_STARTS), seed: int | None = None) -> None:
        self.cells = build_cells()
        self.cells_b64 = base64.b64encode(self.cells).decode()
        self.players: dict[int, Player] = {}
        self.bots = [Bot(*_center(x, y)) for x, y in BOT_STARTS[:bots]]
        self.clock = 0.0
        self.changed = True  # something moved since the last snapshot
        #: No path planner (no worker pool): bots chase in a straight line.
        self.straight = False
        self._random = random.Random(seed)

    # -- players (their clients own their positions) -------------------------------

    def add_player(self, pid: int, name: str) -> Player:
        x, y = _center(*self._random.choice(SPAWNS))
        player = self.players[pid] = Player(pid, name, x, y)
        self.changed = True
        return player

    def remove_player(self, pid: int) -> None:
        if self.players.pop(pid, None) is not None:
            self.changed = True

    def move_player(self, pid: int, x: object, y: object) -> bool:
        """Take a client's position; ValueError when it is not one, False when it is inside a wall."""
        if not _is_int(x) or not _is_int(y) or not (0 <= x < WIDTH * UNIT and 0 <= y < HEIGHT * UNIT):
            raise ValueError(
                f"a position is two integers, 0 <= x < {WIDTH * UNIT} and 0 <= y < {HEIGHT * UNIT}"
            )
        if not self.walkable(x, y):
            return False
        player = self.players[pid]
        if (player.x, player.y) != (x, y):
            player.x, player.y = x, y
            self.changed = True
        return True

    # -- the grid --------------------------------------------------------------------

    def cell_of(self, x: float, y: float) -> int:
        return int(y // UNIT) * WIDTH + int(x // UNIT)

    def walkable(self, x: float, y: float) -> bool:
        return 0 <= x < WIDTH * UNIT and 0 <= y < HEIGHT * UNIT and self.cells[self.cell_of(x, y)] != 0

    # -- bots ------------------------------------------------------------------------

    def step(self, dt: float, plan: Planner) -> list[tuple[int, Player]]:
        """Move every bot ``dt`` seconds on; returns the catches as (bot index, player)."""
        self.clock += dt
        catches = []
        for index, bot in enumerate(self.bots):
            target = self._nearest(bot)
            if target is None or self.clock < bot.resting_until:
                continue
            if not self.straight and not bot.planning and self.clock >= bot.next_plan:
                bot.next_plan = self.clock + PLAN_INTERVAL
                bot.planning = plan(index, self.cell_of(bot.x, bot.y), self.cell_of(target.x, target.y))
            before = (bot.x, bot.y)
            self._advance(bot, target, BOT_SPEED * dt)
            if (bot.x, bot.y) != before:
                self.changed = True
            if math.hypot(target.x - bot.x, target.y - bot.y) < CATCH_RADIUS:
                target.caught += 1
                bot.resting_until = self.clock + CATCH_PAUSE
                bot.path = []
                catches.append((index, target))
        return catches

    def costs_for(self, index: int) -> str:
        """The grid for bot ``index``'s path search, base64: the other bots' cells cost more
        (``CROWD_COST``), so bots chasing one player come from different sides instead of in a file."""
        cells = bytearray(self.cells)
        for other, bot in enumerate(self.bots):
            if other != index:
                cell = self.cell_of(bot.x, bot.y)
                for n in (cell, cell - 1, cell + 1, cell - WIDTH, cell + WIDTH):
                    if 0 <= n < len(cells) and cells[n]:
                        cells[n] = CROWD_COST
        return base64.b64encode(cells).decode()

    def set_path(self, index: int, path: list[int] | None) -> None:
        """A planned path (cell indices from the bot's cell at request time) or None for no path."""
        bot = self.bots[index]
        bot.planning = False
        if not path:
            bot.path = []
            return
        here = self.cell_of(bot.x, bot.y)
        bot.path = path[path.index(here) + 1 :] if here in path else path[1:]

    def _nearest(self, bot: Bot) -> Player | None:
        return min(self.players.values(), key=lambda p: (p.x - bot.x) ** 2 + (p.y - bot.y) ** 2, default=None)

    def _advance(self, bot: Bot, target: Player, budget: float) -> None:
        while budget > 0 and bot.path:
            wx, wy = _center(bot.path[0] % WIDTH, bot.path[0] // WIDTH)
            dist = math.hypot(wx - bot.x, wy - bot.y)
            if dist <= budget:
                bot.x, bot.y = wx, wy
                bot.path.pop(0)
                budget -= dist
            else:
                bot.x += round((wx - bot.x) * budget / dist)
                bot.y += round((wy - bot.y) * budget / dist)
                return
        if budget > 0 and (self.straight or _near(bot, target)):
            self._straight(bot, target, budget)

    def _straight(self, bot: Bot, target: Player, budget: float) -> None:
        """Towards the target, sliding along a wall that is in the way."""
        dx, dy = target.x - bot.x, target.y - bot.y
        dist = math.hypot(dx, dy)
        if dist < 1:
            return
        step = min(budget, dist)
        mx, my = round(dx * step / dist), round(dy * step / dist)
        for cx, cy in ((mx, my), (mx, 0), (0, my)):
            if (cx or cy) and self.walkable(bot.x + cx, bot.y + cy):
                bot.x += cx
                bot.y += cy
                return

    # -- the wire --------------------------------------------------------------------

    def snapshot(self, tick: int) -> str:
        """One tick as JSON: ``{"t":"s","n":tick,"p":[[id,x,y],...],"b":[[x,y],...]}``."""
        self.changed = False
        players = [[p.id, p.x, p.y] for p in self.players.values()]
        bots = [[b.x, b.y] for b in self.bots]
        return json.dumps({"t": "s", "n": tick, "p": players, "b": bots}, separators=(",", ":"))


def _center(cx: int, cy: int) -> tuple[int, int]:
    return cx * UNIT + UNIT // 2, cy * UNIT + UNIT // 2


def _near(bot: Bot, target: Player) -> bool:
    """Close enough (the neighbouring cell) to leave the path and go straight at the target."""
    return abs(target.x - bot.x) < 1.5 * UNIT and abs(target.y - bot.y) < 1.5 * UNIT


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
