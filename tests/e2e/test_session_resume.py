"""Resumable sessions in headless Chromium, through a TCP proxy the test controls.

The page (``/session-page`` of ``tests.support.session_app``) opens ``wsdaemon.js``
with a session; the server publishes 200 numbered chat lines over 4 s while the
proxy cuts every connection several times. The page must end with all 200
exactly once and in order, and the application must have seen ``on_resume``
and no ``on_close``. Then the same with WebSocket upgrades blocked after the
first cut (the session resumes over long-polling), and past ``--resume-window``
the page is told the session was not recovered (close 4000).
"""

from __future__ import annotations

import functools
import json
import time
import urllib.request

import pytest

from tests.support.lp_helpers import wait_for
from tests.support.upgrade_blocker import UpgradeBlockingProxy

APP = "tests.support.session_app:app"
TIMEOUT_MS = 30000
CHAT = [f"chat {i}" for i in range(1, 201)]


@pytest.fixture
def daemon_factory(daemon_factory):
    """tests/conftest.py's factory, with this module's application."""
    return functools.partial(daemon_factory, app=APP)


@pytest.fixture
def proxy_factory():
    proxies = []

    def start(port):
        p = UpgradeBlockingProxy(port, block_upgrades=False)
        proxies.append(p)
        return p

    yield start
    for p in proxies:
        p.close()


def callbacks(daemon) -> list[dict]:
    with urllib.request.urlopen(daemon.http_url + "/callbacks", timeout=10) as resp:
        return json.loads(resp.read())


def open_page(page, proxy, query: str = "") -> str:
    page.goto(f"{proxy.http_url}/session-page{query}")
    page.wait_for_function("window.events.length > 0 && window.got.length > 0")
    assert page.evaluate("window.events") == ["open websocket"]
    assert page.evaluate("window.got") == ["welcome"]
    return page.evaluate("ws._sess.id")


def publish_and_cut(page, proxy, cuts=(0.7, 1.6, 2.5, 3.4), block_after_first_cut=False) -> None:
    """Have the server publish 200 lines over 4 s and cut every connection at the given times."""
    page.evaluate("ws.send('publish 200 20')")
    start = time.monotonic()
    for i, at in enumerate(cuts):
        time.sleep(max(0.0, at - (time.monotonic() - start)))
        if block_after_first_cut and i == 0:
            proxy.block_upgrades = True
        assert proxy.cut_all() > 0
    page.wait_for_function("window.got.length >= 201")
    time.sleep(0.5)  # anything delivered twice would arrive now


def test_resume_after_every_connection_is_cut(daemon_factory, proxy_factory, page):
    daemon = daemon_factory()
    proxy = proxy_factory(daemon.port)
    session_id = open_page(page, proxy)

    publish_and_cut(page, proxy)

    assert page.evaluate("window.got") == ["welcome", *CHAT]
    events = page.evaluate("window.events")
    assert events[0] == "open websocket"
    assert events.count("resume websocket") >= 2, events
    assert not [e for e in events if e.startswith("close")], events
    seen = callbacks(daemon)
    assert [c["event"] for c in seen if c["event"] != "resume"] == ["open"], seen
    assert len([c for c in seen if c["event"] == "resume"]) >= 2, seen
    assert {c["session"] for c in seen} == {session_id}
    # The session goes on: a message from the page still reaches the server and comes back.
    page.evaluate("ws.send('after the storm')")
    page.wait_for_function("window.got[window.got.length - 1] === 'after the storm'")


def test_resume_over_long_polling_when_websocket_is_blocked(daemon_factory, proxy_factory, page):
    daemon = daemon_factory()
    proxy = proxy_factory(daemon.port)
    session_id = open_page(page, proxy, "?timeout=2000")

    publish_and_cut(page, proxy, block_after_first_cut=True)

    assert page.evaluate("window.got") == ["welcome", *CHAT]
    events = page.evaluate("window.events")
    assert "resume long-polling" in events, events
    assert not [e for e in events if e.startswith("close")], events
    assert page.evaluate("ws.transport") == "long-polling"
    assert proxy.blocked >= 1
    seen = callbacks(daemon)
    assert [c["event"] for c in seen if c["event"] != "resume"] == ["open"], seen
    assert {"event": "resume", "session": session_id, "protocol": "long-polling"} in seen
    page.evaluate("ws.send('over long-polling')")
    page.wait_for_function("window.got[window.got.length - 1] === 'over long-polling'")


def test_past_the_window_the_page_is_told_it_was_not_recovered(daemon_factory, proxy_factory, page):
    daemon = daemon_factory("--resume-window", "1")
    proxy = proxy_factory(daemon.port)
    session_id = open_page(page, proxy)

    proxy.refuse_all = True  # the network is down for longer than the window
    proxy.cut_all()
    page.wait_for_function("window.events.includes('reconnecting')")
    wait_for(lambda: [c for c in callbacks(daemon) if c["event"] == "close"], timeout=15)
    time.sleep(0.5)
    proxy.refuse_all = False

    page.wait_for_function("window.events.some(e => e.startsWith('close'))")
    events = page.evaluate("window.events")
    assert events[-1] == "close 4000 session not recovered", events
    assert "resume websocket" not in events
    closes = [c for c in callbacks(daemon) if c["event"] == "close"]
    assert closes == [
        {
            "event": "close",
            "session": session_id,
            "protocol": "rfc6455",
            "code": 1006,
            "reason": "session not resumed",
        }
    ]
    # A new client gets a fresh session: a fresh on_open.
    page.evaluate("connect()")
    page.wait_for_function("window.events[window.events.length - 1] === 'open websocket'")
    opens = [c for c in callbacks(daemon) if c["event"] == "open"]
    assert len(opens) == 2 and opens[1]["session"] != session_id
