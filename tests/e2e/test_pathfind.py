"""The path-search demo: A* itself, the daemon with a worker, and the page in a real browser."""

import base64
import json
import random
import time

import pytest
import websocket

from wsdaemon.apps.pathfind import astar

APP = "wsdaemon.apps.pathfind:app"


def grid_from(rows: list[str]) -> tuple[bytes, int, int]:
    """'#' is a wall, a digit the cost of entering the cell."""
    return bytes(0 if c == "#" else int(c) for row in rows for c in row), len(rows[0]), len(rows)


def random_grid(side: int, seed: int) -> bytes:
    rng = random.Random(seed)
    cells = bytearray(0 if rng.random() < 0.2 else rng.randint(1, 5) for _ in range(side * side))
    for d in range(3):
        cells[d] = cells[d * side] = cells[-1 - d] = cells[-1 - d * side] = 1
    return bytes(cells)


def test_astar_goes_around_walls_and_through_cheap_cells():
    grid, w, h = grid_from(
        [
            "1911",
            "1#91",
            "1#11",
            "1111",
        ]
    )
    path, cost, expanded = astar(grid, w, h, 0, w * h - 1)
    assert path == [0, 4, 8, 12, 13, 14, 15]  # down the left side, not through the 9s
    assert cost == 6 and expanded > 0


def test_astar_reports_no_path():
    grid, w, h = grid_from(["11#1", "11#1", "##11", "1111"])
    assert astar(grid, w, h, 0, w * h - 1)[0] is None
    grid, w, h = grid_from(["#1", "11"])
    assert astar(grid, w, h, 0, 3) == (None, 0, 0)


def test_search_in_a_worker_while_echoes_are_answered(daemon_factory):
    d = daemon_factory("--workers", "1", app=APP)
    side = 300
    cells = random_grid(side, seed=7)
    expected = astar(cells, side, side, 0, side * side - 1)
    ws = websocket.create_connection(d.url, timeout=30)
    other = websocket.create_connection(d.url, timeout=10)
    try:
        request = {"type": "path", "width": side, "height": side, "cells": base64.b64encode(cells).decode()}
        ws.send(json.dumps(request))
        ws.send(json.dumps(request))  # one search at a time per client
        assert json.loads(ws.recv())["error"] == "Busy"
        other.send("hello")
        assert other.recv() == "hello"
        answer = json.loads(ws.recv())
        assert answer["type"] == "path", answer
        assert (answer["path"], answer["cost"], answer["expanded"]) == tuple(expected)
        assert answer["worker"] > 0

        ws.send(json.dumps({"type": "path", "width": 3, "height": 3, "cells": "AAAA"}))
        answer = json.loads(ws.recv())
        assert answer["error"] == "BadRequest" and "not width*height = 9" in answer["message"]
        ws.send(json.dumps({"type": "path", "width": 1, "height": 3, "cells": ""}))
        assert json.loads(ws.recv())["error"] == "BadRequest"
    finally:
        ws.close()
        other.close()


def test_without_workers_the_demo_says_so(daemon_factory):
    d = daemon_factory(app=APP)
    ws = websocket.create_connection(d.url, timeout=10)
    try:
        cells = base64.b64encode(bytes([1] * 4)).decode()
        ws.send(json.dumps({"type": "path", "width": 2, "height": 2, "cells": cells}))
        answer = json.loads(ws.recv())
        assert answer["error"] == "NoWorkers" and "--workers" in answer["message"]
    finally:
        ws.close()


@pytest.mark.parametrize("transport", ["websocket", "long-polling"])
def test_page_in_a_real_browser(daemon_factory, transport):
    from playwright.sync_api import sync_playwright

    from tests.support.chromium import launch_chromium

    d = daemon_factory("--workers", "1", app=APP)
    with sync_playwright() as p:
        browser = launch_chromium(p)
        try:
            page = browser.new_page()
            page.goto(f"{d.http_url}/pathfind?size=200&transport={transport}")  # searches once connected
            page.wait_for_function(
                "/path of|no path/.test(document.getElementById('log').textContent)", timeout=30_000
            )
            deadline = time.monotonic() + 10
            while "ping: -" in page.inner_text("#ping"):
                assert time.monotonic() < deadline, "no ping answered"
                page.wait_for_timeout(100)
            assert "by worker" in page.inner_text("#log")
            assert page.inner_text("#log").endswith(f"over {transport}")
        finally:
            browser.close()
