"""Rooms with the JS client (wsdaemon.js) over long-polling in headless Chromium.

Two browser members join a room over forced long-polling beside a raw RFC 6455
member (websocket-client); publishes reach each of them once, presence lists
the users, a page that closes leaves the room, and a bad token is refused
before any session opens (the client reports the failed open).
"""

from __future__ import annotations

import json
import urllib.request

import websocket

from tests.support.lp_helpers import wait_for

APP = "tests.support.rooms_app:app"
TIMEOUT_MS = 15000


def state(d) -> dict:
    with urllib.request.urlopen(d.http_url + "/state", timeout=10) as resp:
        return json.loads(resp.read())


def wait_got(page, name: str, text: str) -> None:
    page.wait_for_function("([n, t]) => (window.got[n] || []).indexOf(t) >= 0", arg=[name, text])


def test_rooms_over_long_polling_in_chromium(browser, daemon_factory):
    d = daemon_factory(app=APP)
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        page.goto(f"{d.http_url}/page")
        for name in ("anna", "ben"):
            assert page.evaluate("n => connect(n, 'long-polling')", name) == "long-polling"
            page.evaluate("n => window.socks[n].send('join lobby')", name)
            wait_got(page, name, 'rooms ["lobby"]')
        raw = websocket.create_connection(d.url + "?name=raw", timeout=10)
        raw.send("join lobby")
        assert raw.recv() == 'rooms ["lobby"]'
        raw.send("presence lobby")
        assert raw.recv() == 'presence ["anna", "ben", "raw"]'
        assert [p for p, u in state(d)["opens"]] == ["long-polling", "long-polling", "rfc6455"]

        raw.send("publish lobby from raw")
        assert raw.recv() == "published 2"
        wait_got(page, "anna", "from raw")
        wait_got(page, "ben", "from raw")
        page.evaluate("window.socks.anna.send('publish lobby from anna')")
        assert raw.recv() == "from anna"
        wait_got(page, "ben", "from anna")
        wait_got(page, "anna", "published 2")
        for name in ("anna", "ben"):
            got = page.evaluate("n => window.got[n]", name)
            assert got.count("from raw") == 1 and got.count("from anna") == (name == "ben")

        # Keyed publishes to the page members: the newest arrives, then the unkeyed marker.
        raw.send("publish_keyed lobby 500")
        # One loop iteration published them all: corked, they replaced each other in place.
        assert [raw.recv(), raw.recv()] == ["room-state 499", "room-done"]
        wait_got(page, "ben", "room-done")
        got = page.evaluate("window.got.ben")
        states = [g for g in got if g.startswith("room-state ")]
        assert states and states[-1] == "room-state 499"
        assert got.index("room-done") > got.index("room-state 499")

        page.evaluate("window.socks.ben.close(1000, 'bye')")
        page.wait_for_function("window.ended.ben === 1000")
        wait_for(lambda: state(d)["presence"].get("lobby") == ["anna", "raw"])
        raw.send("presence lobby")
        assert raw.recv() == 'presence ["anna", "raw"]'

        # A bad token: the long-polling open is refused, the page's client reports a failed open.
        page.evaluate("() => { connect('eve', 'long-polling', 'bad'); }")  # its open never resolves
        page.wait_for_function("window.ended.eve !== undefined")
        assert "eve" not in [u for _, u in state(d)["opens"]]
        raw.close()
    finally:
        context.close()
    assert not errors, errors
