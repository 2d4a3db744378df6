"""The arena's world without a server: positions, bots on paths and in a straight line, catches, ticks."""

import json

import pytest

from wsdaemon.apps.arena.world import UNIT, WIDTH, World, build_cells
from wsdaemon.apps.pathfind import astar


def center(cx: int, cy: int) -> tuple[int, int]:
    return cx * UNIT + UNIT // 2, cy * UNIT + UNIT // 2


def world_with_player(cx: int, cy: int) -> World:
    world = World(seed=1)
    world.add_player(1, "p")
    assert world.move_player(1, *center(cx, cy))
    return world


def test_the_grid_is_walled_and_every_floor_cell_is_reachable():
    cells = build_cells()
    assert cells[0] == 0 and cells[WIDTH + 1] == 1
    floor = [i for i, c in enumerate(cells) if c]
    for goal in floor[:: len(floor) // 20]:
        assert astar(cells, WIDTH, len(cells) // WIDTH, floor[0], goal)[0] is not None


def test_positions_are_checked():
    world = world_with_player(3, 3)
    for bad in (("1", 2), (1.5, 2), (True, 2), (-1, 2), (WIDTH * UNIT, 2), (None, None)):
        with pytest.raises(ValueError, match="two integers"):
            world.move_player(1, *bad)
    assert world.move_player(1, 5, 5) is False  # a wall: ignored, not an error
    assert (world.players[1].x, world.players[1].y) == center(3, 3)


def test_a_bot_follows_its_planned_path_and_asks_again_later():
    world = world_with_player(3, 3)
    asked = []

    def plan(index, start, goal):
        asked.append((index, start, goal))
        return True

    world.step(0.05, plan)
    assert [a[0] for a in asked] == [0, 1, 2] and all(goal == 3 * WIDTH + 3 for _, _, goal in asked)
    bot = world.bots[0]
    path, _, _ = astar(world.cells, WIDTH, len(world.cells) // WIDTH, asked[0][1], asked[0][2])
    world.set_path(0, path)
    start = (bot.x, bot.y)
    for _ in range(10):
        world.step(0.05, plan)
    assert (bot.x, bot.y) != start
    assert world.cell_of(bot.x, bot.y) in path  # on the path, never through a wall
    assert len(asked) == 3  # bots 1 and 2 are still waiting for their answer; bot 0 not due yet
    for _ in range(10):
        world.step(0.05, plan)
    again = [a for a in asked if a[0] == 0][1:]  # re-planned after 0.5 s, from where it got to
    assert len(again) == 1 and again[0][1] in path and again[0][1] != asked[0][1]


def test_without_a_planner_bots_chase_in_a_straight_line_and_catch():
    world = world_with_player(20, 15)  # just below bot 0, which starts at (20, 13)
    world.straight = True
    catches = []
    for _ in range(40):
        catches += world.step(0.05, lambda *a: pytest.fail("no planner to ask"))
    assert catches and catches[0][0] == 0 and world.players[1].caught >= 1
    rested = world.bots[0].resting_until
    assert rested > world.clock - 2  # a catch makes the bot rest before it chases again


def test_the_straight_chase_slides_along_a_wall():
    world = world_with_player(26, 8)  # up and right of bot 0, behind the wall (16..23, 10)
    world.straight = True
    bot = world.bots[0]
    catches = []
    for step in range(100):
        catches += world.step(0.05, lambda *a: False)
        assert world.walkable(bot.x, bot.y)
        if step == 20:
            assert bot.y // UNIT == 11 and bot.x > center(20, 13)[0]  # along the wall, not into it
    assert catches  # round the wall's end and up to the player


def test_a_snapshot_is_one_short_json_line_and_clears_changed():
    world = world_with_player(3, 3)
    assert world.changed
    text = world.snapshot(7)
    doc = json.loads(text)
    assert doc == {
        "t": "s",
        "n": 7,
        "p": [[1, 350, 350]],
        "b": [list(center(x, y)) for x, y in ((20, 13), (27, 6), (12, 22))],
    }
    assert len(text) < 100 and not world.changed
    world.add_player(2, "q")
    assert len(world.snapshot(8)) - len(text) <= 16  # one more player: up to 16 bytes


def test_a_bots_search_grid_makes_the_other_bots_cells_dear():
    import base64

    from wsdaemon.apps.arena.world import CROWD_COST

    world = World(seed=1)
    costs = base64.b64decode(world.costs_for(0))
    own, other = (world.cell_of(b.x, b.y) for b in world.bots[:2])
    assert costs[own] == 1 and costs[other] == CROWD_COST and costs[other + WIDTH] == CROWD_COST
    assert sum(c != o for c, o in zip(costs, world.cells, strict=True)) == 10  # two bots, five cells each
    assert all(costs[i] == 0 for i, c in enumerate(world.cells) if c == 0)  # walls stay walls
    # Bot 0 stands between bot 1 and its goal: bot 1's path goes round it.
    world.bots[0].x, world.bots[0].y = center(24, 6)
    height = len(world.cells) // WIDTH
    start, goal = world.cell_of(*center(27, 6)), world.cell_of(*center(21, 6))
    straight = astar(world.cells, WIDTH, height, start, goal)[0]
    around = astar(base64.b64decode(world.costs_for(1)), WIDTH, height, start, goal)[0]
    assert world.cell_of(*center(24, 6)) in straight and world.cell_of(*center(24, 6)) not in around
