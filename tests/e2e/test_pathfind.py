"""The path-search demo: A* itself, the daemon with a worker, and the page in a real browser."""

import base64
import json
import random
import time

import pytest
import websocket

from wsdaemon.apps.pathfind import astar, find_path

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


def test_the_task_takes_a_start_and_a_goal():
    grid, w, h = grid_from(["111", "1#1", "111"])
    cells = base64.b64encode(grid).decode()
    assert find_path(w, h, cells)["path"] == astar(grid, w, h, 0, 8)[0]
    assert find_path(w, h, cells, start=6, goal=2)["path"] in ([6, 3, 0, 1, 2], [6, 7, 8, 5, 2])
    for bad in ({"start": 9}, {"goal": -1}, {"start": True}, {"goal": "2"}):
        with pytest.raises(ValueError, match="cell index from 0 to 8"):
            find_path(w, h, cells, **bad)
    with pytest.raises(ValueError, match="not width\\*height"):
        find_path(4, 4, cells)


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
            page.goto(
                f"{d.http_url}/pathfind?size=200&seed=1&transport={transport}"
            )  # searches once connected
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


def test_request_ids_are_echoed(daemon_factory):
    d = daemon_factory("--workers", "1", app=APP)
    ws = websocket.create_connection(d.url, timeout=30)
    try:
        cells = base64.b64encode(random_grid(300, seed=3)).decode()
        ws.send(json.dumps({"type": "path", "id": 1, "width": 300, "height": 300, "cells": cells}))
        ws.send(json.dumps({"type": "path", "id": "two", "width": 300, "height": 300, "cells": cells}))
        busy = json.loads(ws.recv())
        assert (busy["error"], busy["id"]) == ("Busy", "two")
        answer = json.loads(ws.recv())
        assert (answer["type"], answer["id"]) == ("path", 1)
        ws.send(json.dumps({"type": "path", "id": 3, "width": 1, "height": 3, "cells": ""}))
        assert json.loads(ws.recv())["id"] == 3
        ws.send(json.dumps({"type": "path", "id": [4], "width": 2, "height": 2, "cells": "AQEBAQ=="}))
        assert "id" not in json.loads(ws.recv())  # only integers and strings are echoed
    finally:
        ws.close()


@pytest.fixture
def browser_page():
    from playwright.sync_api import sync_playwright

    from tests.support.chromium import launch_chromium

    with sync_playwright() as p:
        browser = launch_chromium(p)
        try:
            page = browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            yield page
            assert not errors, errors
        finally:
            browser.close()


def wait_answer(page, timeout_ms: int = 60_000) -> str:
    page.wait_for_function(
        "/path of|no path|error|closed/.test(document.getElementById('log').textContent)", timeout=timeout_ms
    )
    return page.inner_text("#log")


def test_page_with_transport_auto(daemon_factory, browser_page):
    d = daemon_factory("--workers", "1", app=APP)
    browser_page.goto(f"{d.http_url}/pathfind?size=100&seed=1&transport=auto")
    log = wait_answer(browser_page)
    assert log.startswith("100 x 100: path of") and log.endswith("over websocket"), log


def test_page_with_an_unknown_transport_says_so(daemon_factory, browser_page):
    d = daemon_factory("--workers", "1", app=APP)
    browser_page.goto(f"{d.http_url}/pathfind?transport=carrier-pigeon")
    browser_page.wait_for_function("document.getElementById('log').textContent !== ''", timeout=10_000)
    log = browser_page.inner_text("#log")
    assert log.startswith("unknown transport: carrier-pigeon") and "auto" in log, log
    assert browser_page.is_disabled("#search")


def red(page, x: int, y: int) -> bool:
    return page.evaluate(
        """([x, y]) => { const d = document.getElementById('grid').getContext('2d').getImageData(x, y, 1, 1).data;
                        return d[0] === 0xe0 && d[1] === 0x20 && d[2] === 0x1c; }""",
        [x, y],
    )


@pytest.mark.parametrize("transport", ["websocket", "long-polling"])
def test_new_terrain_during_a_search_shows_the_new_grids_answer(daemon_factory, browser_page, transport):
    d = daemon_factory("--workers", "1", app=APP)
    page = browser_page
    page.goto(f"{d.http_url}/pathfind?size=800&seed=1&transport={transport}")  # seconds of A* in the worker
    page.wait_for_function("/searching 800/.test(document.getElementById('log').textContent)", timeout=15_000)
    page.select_option("#size", "100")
    page.click("#search")
    log = wait_answer(page)
    assert log.startswith("100 x 100: path of"), log
    assert page.evaluate("document.getElementById('grid').width") == 100
    assert red(page, 0, 0) and red(page, 99, 99)  # the path runs corner to corner of the new grid
    page.wait_for_timeout(500)
    assert page.inner_text("#log") == log  # no later answer replaces it
