"""The arena demo in headless Chromium: two players see each other move, bots chase, chat arrives.

Positions, bots and chat lines are read from the page's ``window.arena`` state.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

import pytest
import websocket

APP = "wsdaemon.apps.arena:app"
#: (axis, key towards larger, key towards smaller): arrows and WASD both move.
AXES = (("x", "ArrowRight", "ArrowLeft"), ("y", "s", "w"), ("x", "d", "a"), ("y", "ArrowDown", "ArrowUp"))


@pytest.fixture
def browser():
    from playwright.sync_api import sync_playwright

    from tests.support.chromium import launch_chromium

    with sync_playwright() as p:
        browser = launch_chromium(p)
        try:
            yield browser
        finally:
            browser.close()


def open_player(browser, url: str, errors: list[str]):
    page = browser.new_page(viewport={"width": 1180, "height": 700})
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(url)
    page.wait_for_function(
        "window.arena && window.arena.connected && window.arena.id !== null", timeout=15_000
    )
    return page


def arena(page) -> dict:
    return page.evaluate("JSON.parse(JSON.stringify(window.arena, (k, v) => k === 'grid' ? undefined : v))")


def move(mover, watcher, axis: tuple[str, str, str]) -> float:
    """Hold a key towards the field's middle on ``mover`` for 300 ms; ms from its last step until
    ``watcher`` shows it there."""
    before = mover.evaluate("[Math.round(arena.me.x), Math.round(arena.me.y)]")
    name, up, down = axis
    side = mover.evaluate(f"arena.{'width' if name == 'x' else 'height'} * arena.unit")
    key = up if before[0 if name == "x" else 1] < side / 2 else down
    mover.keyboard.down(key)
    mover.wait_for_timeout(300)
    mover.keyboard.up(key)
    # The position is sent at most every 50 ms: wait until the last one is out.
    mover.wait_for_function(
        "arena.sent && arena.sent.x === Math.round(arena.me.x) && arena.sent.y === Math.round(arena.me.y)",
        timeout=5_000,
    )
    mine = mover.evaluate("({id: arena.id, x: arena.sent.x, y: arena.sent.y, movedAt: arena.movedAt})")
    assert [mine["x"], mine["y"]] != before, f"{key} did not move the dot from {before}"
    watcher.wait_for_function(
        "([id, x, y]) => { const p = arena.players[id]; return p && p.x === x && p.y === y; }",
        arg=[mine["id"], mine["x"], mine["y"]],
        timeout=5_000,
    )
    seen_at = watcher.evaluate("id => arena.players[id].seenAt", mine["id"])
    return seen_at - mine["movedAt"]


def workers_completed(d) -> int:
    with urllib.request.urlopen(f"{d.http_url}/status", timeout=5) as answer:
        return json.load(answer)["workers"]["completed"]


@pytest.mark.parametrize("second", ["websocket", "long-polling"])
def test_two_players_see_each_other_bots_chase_and_chat_arrives(daemon_factory, browser, tmp_path, second):
    d = daemon_factory("--workers", "2", app=APP)
    errors: list[str] = []
    alice = open_player(browser, f"{d.http_url}/arena?name=alice", errors)
    bob = open_player(browser, f"{d.http_url}/arena?name=bob&transport={second}", errors)
    for page in (alice, bob):
        page.wait_for_function(
            "Object.keys(arena.players).length === 2 && arena.who.length === 2", timeout=10_000
        )

    a, b = arena(alice), arena(bob)
    assert (a["transport"], b["transport"]) == ("websocket", second)
    assert alice.inner_text("#transport") == "WebSocket"
    assert bob.inner_text("#transport") == ("WebSocket" if second == "websocket" else "long-polling")
    wire = {"websocket": "rfc6455", "long-polling": "long-polling"}
    assert [(p["name"], p["via"]) for p in a["who"]] == [("alice", "rfc6455"), ("bob", wire[second])]
    assert "bob via" in alice.inner_text("#who") and "alice (you)" in alice.inner_text("#who")

    latencies = []
    for axis in AXES:
        latencies.append(move(alice, bob, axis))
        latencies.append(move(bob, alice, axis))
    print(f"\n{second}: position seen by the other page after {sorted(round(x) for x in latencies)} ms")
    assert sum(ms <= 200 for ms in latencies) >= 0.75 * len(latencies), latencies
    assert max(latencies) <= 1000, latencies  # one slow turn of a loaded machine, not a lost update

    # Bots chase along paths the workers found.
    assert b["botsMode"] == "paths from workers"
    bots_before = arena(bob)["bots"]
    bob.wait_for_timeout(1000)
    bots_after = arena(bob)["bots"]
    assert len(bots_after) == 3 and bots_after != bots_before, (bots_before, bots_after)
    assert workers_completed(d) > 0

    # Chat both ways, in order, once each.
    alice.fill("#say", "hello from alice")
    alice.press("#say", "Enter")
    bob.wait_for_function("arena.chat.some(l => l.text === 'hello from alice')", timeout=5_000)
    bob.fill("#say", "hi alice, bob here")
    bob.click("#chatform button")
    alice.wait_for_function("arena.chat.some(l => l.text === 'hi alice, bob here')", timeout=5_000)
    for page in (alice, bob):
        lines = [(line["name"], line["text"]) for line in arena(page)["chat"]]
        assert lines == [("alice", "hello from alice"), ("bob", "hi alice, bob here")], lines
        assert "alice: hello from alice" in page.inner_text("#chat")

    for name, page in (("alice", alice), ("bob", bob)):
        shot = tmp_path / f"arena-{second}-{name}.png"
        page.screenshot(path=str(shot))
        print(f"screenshot: {shot}")
        assert shot.stat().st_size > 10_000
    assert not errors, errors


def test_without_workers_bots_chase_in_a_straight_line(daemon_factory):
    d = daemon_factory(app=APP)
    ws = websocket.create_connection(f"{d.url}arena?name=carol", timeout=10)
    try:
        hello = json.loads(ws.recv())
        assert hello["t"] == "hello" and hello["name"] == "carol"
        first = last = None
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            doc = json.loads(ws.recv())
            if doc["t"] == "s":
                first = first or doc["b"]
                last = doc["b"]
        assert first and last != first, "the bots did not move"
        d.wait_for_log("bots chase in a straight line")
        late = websocket.create_connection(f"{d.url}arena", timeout=10)
        try:
            assert json.loads(late.recv())["bots"] == "straight line"
        finally:
            late.close()
        assert d.log().count("bots chase in a straight line") == 1
    finally:
        ws.close()


def test_bad_messages_close_only_that_player(daemon_factory):
    d = daemon_factory(app=APP)
    good = websocket.create_connection(f"{d.url}arena?name=dave", timeout=10)
    bad = websocket.create_connection(f"{d.url}arena?name=eve", timeout=10)
    try:
        assert json.loads(bad.recv())["t"] == "hello"
        bad.send(json.dumps({"t": "pos", "x": "left", "y": 3}))
        opcode, payload = drain_until_close(bad)
        assert int.from_bytes(payload[:2], "big") == 1008
        assert payload[2:].decode().startswith("bad position: a position is two integers")
        assert "closing eve: bad position" in d.wait_for_log("closing eve")

        good.send(json.dumps({"t": "chat", "text": "x" * 201}))
        good.send(json.dumps({"t": "chat", "text": "still here"}))
        seen = []
        while not any(m.get("t") == "chat" for m in seen):
            seen.append(json.loads(good.recv()))
        errors = [m["text"] for m in seen if m["t"] == "error"]
        assert errors == ["a chat line is 1 to 200 characters"]
        assert [m["text"] for m in seen if m["t"] == "chat"] == ["still here"]
    finally:
        good.close()
        bad.close()


def drain_until_close(ws) -> tuple[int, bytes]:
    while True:
        opcode, payload = ws.recv_data(control_frame=True)
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            return opcode, payload


def test_a_bad_name_is_refused_at_the_handshake(daemon_factory):
    d = daemon_factory(app=APP)
    long_name = "z" * 25
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        websocket.create_connection(f"{d.url}arena?name={long_name}", timeout=10)
    assert refused.value.status_code == 400
    assert b"name must be 1 to 24 printable characters" in (refused.value.resp_body or b"")
    request = urllib.request.Request(f"{d.http_url}/lp/open/arena?name={long_name}", data=b"", method="POST")
    with pytest.raises(urllib.error.HTTPError) as lp_refused:
        urllib.request.urlopen(request, timeout=10)
    assert lp_refused.value.code == 400
    assert b"name must be 1 to 24" in lp_refused.value.read()
    ws = websocket.create_connection(f"{d.url}arena?name=frank", timeout=10)
    try:
        while (doc := json.loads(ws.recv()))["t"] != "who":
            pass
        assert [p["name"] for p in doc["players"]] == ["frank"]  # the refused ones never joined
    finally:
        ws.close()


@pytest.mark.parametrize(
    "transport, then",
    [("websocket", "websocket"), ("long-polling", "long-polling"), ("auto", "long-polling")],
    ids=["websocket", "long-polling", "websocket-then-long-polling"],
)
def test_chat_lines_survive_a_cut_connection(daemon_factory, browser, transport, then):
    """Every connection of the page is reset mid-chat: the session resumes, no line lost or doubled.

    In the last case WebSocket upgrades are refused from the cut on, so the session resumes over
    long-polling."""
    from tests.support.upgrade_blocker import UpgradeBlockingProxy

    d = daemon_factory(app=APP)
    proxy = UpgradeBlockingProxy(d.port, block_upgrades=False)
    bob = websocket.create_connection(f"{d.url}arena?name=bob", timeout=10)  # a raw client: no session
    try:
        errors: list[str] = []
        alice = open_player(browser, f"{proxy.http_url}/arena?name=alice&transport={transport}", errors)
        alice_id = alice.evaluate("arena.id")
        assert alice.evaluate("arena.transport") == ("websocket" if transport == "auto" else transport)
        sent = [f"line {i}" for i in range(10)]
        for i, text in enumerate(sent):
            bob.send(json.dumps({"t": "chat", "text": text}))
            if i == 4:
                proxy.block_upgrades = then != "websocket"
                assert proxy.cut_all() > 0
            time.sleep(0.05)
        alice.wait_for_function(f"arena.chat.length >= {len(sent)}", timeout=30_000)
        alice.wait_for_timeout(300)  # nothing doubled arrives late
        state = arena(alice)
        assert [line["text"] for line in state["chat"]] == sent
        assert [line["n"] for line in state["chat"]] == list(range(1, len(sent) + 1))
        assert state["closed"] is None and state["id"] == alice_id
        assert state["transport"] == then
        if state["resumes"]:  # a new transport resumed the session (a cut poll may just be retried)
            wire = {"websocket": "rfc6455", "long-polling": "long-polling"}[then]
            assert f"alice resumed over {wire}" in d.wait_for_log(f"alice resumed over {wire}")
        if transport == "auto":
            assert state["resumes"] >= 1 and alice.inner_text("#transport") == "long-polling"
        whos = []
        deadline = time.monotonic() + 1
        while time.monotonic() < deadline:
            doc = json.loads(bob.recv())
            if doc["t"] == "who":
                whos.append({p["name"]: p["via"] for p in doc["players"]})
        joined = next(i for i, names in enumerate(whos) if "alice" in names)
        assert all("alice" in names for names in whos[joined:]), whos  # never left (no on_close)
        assert "closing alice" not in d.log()
        assert whos[-1]["alice"] == {"websocket": "rfc6455", "long-polling": "long-polling"}[then]
        print(f"\n{transport} -> {then}: {state['resumes']} resume(s), presence seen by bob: {whos[-1]}")
        assert not errors, errors
    finally:
        bob.close()
        proxy.close()


def test_a_held_touch_moves_the_dot_towards_it(daemon_factory, browser):
    d = daemon_factory(app=APP)
    context = browser.new_context(has_touch=True, viewport={"width": 1180, "height": 700})
    try:
        errors: list[str] = []
        page = context.new_page()
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(f"{d.http_url}/arena?name=thumb")
        page.wait_for_function("arena.connected && arena.me && arena.grid", timeout=15_000)
        before = page.evaluate("[arena.me.x, arena.me.y]")
        # Hold a finger two cells towards the middle of the field (touch events as a phone sends them).
        page.evaluate(
            """() => {
                const field = document.getElementById('field'), r = field.getBoundingClientRect();
                const scale = r.width / (arena.width * arena.unit);
                const dx = arena.me.x < arena.width * arena.unit / 2 ? 200 : -200;
                const touch = new Touch({identifier: 1, target: field,
                                         clientX: r.left + (arena.me.x + dx) * scale,
                                         clientY: r.top + arena.me.y * scale});
                field.dispatchEvent(new TouchEvent('touchstart', {touches: [touch], cancelable: true}));
                setTimeout(() => field.dispatchEvent(new TouchEvent('touchend', {touches: []})), 600);
            }"""
        )
        page.wait_for_timeout(900)
        after = page.evaluate("[arena.me.x, arena.me.y]")
        assert abs(after[0] - before[0]) == pytest.approx(200, abs=15) and abs(after[1] - before[1]) < 15
        page.wait_for_function(  # and the server has it
            "arena.sent && arena.players[arena.id] && arena.players[arena.id].x === arena.sent.x",
            timeout=5_000,
        )
        assert not errors, errors
    finally:
        context.close()


@pytest.mark.parametrize("draft", [76, 75])
def test_an_old_safari_plays_too(daemon_factory, draft):
    """A hixie client joins beside an RFC 6455 one: same room, same ticks, same chat."""
    from tests.support.hixie_client import HixieClient

    d = daemon_factory(app=APP)
    old = HixieClient(d.host, d.port, draft, path="/arena?name=safari")
    new = websocket.create_connection(f"{d.url}arena?name=chrome", timeout=10)
    try:
        old.handshake()
        hello = json.loads(old.recv())
        assert (hello["t"], hello["name"]) == ("hello", "safari")
        new.send(json.dumps({"t": "pos", "x": 550, "y": 350}))
        new.send(json.dumps({"t": "chat", "text": "hello old friend"}))
        seen_move = seen_chat = False
        deadline = time.monotonic() + 10
        while not (seen_move and seen_chat):
            assert time.monotonic() < deadline, "the hixie client did not see the move and the chat"
            doc = json.loads(old.recv())
            if doc["t"] == "s":
                seen_move = seen_move or any(p[1:] == [550, 350] for p in doc["p"])
            elif doc["t"] == "chat":
                seen_chat = doc["text"] == "hello old friend"
            elif doc["t"] == "who":
                assert {p["via"] for p in doc["players"]} <= {f"hixie-{draft}", "rfc6455"}
    finally:
        old.close()
        new.close()


def test_the_readme_starts_with_the_arena():
    """Right after the two set-up commands: the command the tests above run, and the page's URL."""
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    blocks = re.findall(r"```sh\n(.*?)```", readme, re.S)
    assert blocks[0].splitlines()[0].startswith("python3 -m pip install . && wsdaemon run --port 8081")
    assert blocks[0].splitlines()[1].startswith("bash tests/run.sh")
    assert blocks[1].startswith(f"wsdaemon run --app {APP} --workers 2 ")
    assert "http://127.0.0.1:8081/arena" in blocks[1]
    between = readme[readme.index(blocks[0]) + len(blocks[0]) : readme.index(blocks[1])]
    assert between.strip() == "```\n\n## Play the arena\n\n```sh"
