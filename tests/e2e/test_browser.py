"""The test page and wsdaemon.js in a real browser (Debian's headless Chromium, driven by playwright).

For each transport (WebSocket, forced long-polling, and WebSocket blocked so
that the client falls back) the page opens, sends and receives text, unicode and
binary, gets server pushes, closes with a code and reason the server sees, and
observes a server-initiated close. WebSocket is blocked by loading the page
through :class:`upgrade_blocker.UpgradeBlockingProxy`, a proxy that breaks
upgrades (closing them at once, or never answering them). The same proxy also
cuts responses mid-way to show that the client loses nothing over long-polling.

These tests fail, never skip, when Chromium or playwright is missing: the
browser is part of the test environment (tests/install-deps.sh installs it).
"""

from __future__ import annotations

import json
import time
import urllib.request

import pytest

from tests.support.lp_helpers import closes, wait_for
from tests.support.upgrade_blocker import UpgradeBlockingProxy

APP = "tests.support.lp_app:app"
TIMEOUT_MS = 15000
UNICODE = "привет, мир ✓ 🎮 ½"


@pytest.fixture(scope="module")
def daemon():
    from tests.support.daemon_process import Daemon

    d = Daemon(app=APP)
    yield d
    d.stop()


def log_lines(page) -> list[str]:
    return page.locator("#log div").all_inner_texts()


def wait_line(page, text: str, count: int = 1) -> None:
    """Wait until the page's log has ``count`` lines equal to ``text``."""
    page.wait_for_function(
        "([t, n]) => Array.from(document.querySelectorAll('#log div')).filter(d => d.textContent === t).length >= n",
        arg=[text, count],
    )


def send(page, text: str) -> None:
    page.fill("#message", text)
    page.click("#send")


def converse(page, base_url: str, query: str, transport: str, daemon, tag: str) -> None:
    """The whole exchange on the test page; ``transport`` is what the client must end up using."""
    server_protocol = "rfc6455" if transport == "websocket" else "long-polling"
    name = "WebSocket" if transport == "websocket" else "long-polling"  # what the log lines say
    page.goto(f"{base_url}/?{query}")
    wait_line(page, f"{name} opened")
    assert page.evaluate("ws.transport") == transport
    assert page.evaluate("ws.readyState") == 1
    wait_line(page, f"{name} message: welcome {server_protocol}")

    send(page, "hello")
    wait_line(page, f"{name} message: hello")
    send(page, UNICODE)
    wait_line(page, f"{name} message: {UNICODE}")
    page.evaluate("ws.send(new Uint8Array([0, 1, 2, 127, 128, 255]).buffer)")
    wait_line(page, f"{name} message: binary 0,1,2,127,128,255")

    # Server pushes: messages the server sends from timers, not as answers.
    send(page, "push 3")
    wait_line(page, f"{name} message: push 3")
    pushes = [line for line in log_lines(page) if line.startswith(f"{name} message: push ")]
    assert pushes == [f"{name} message: push {i}" for i in (1, 2, 3)]

    # The client closes with a code and a reason; the application sees both.
    reason = f"bye from {tag} ✓"
    page.fill("#code", "4001")
    page.fill("#reason", reason)
    page.click("#close")
    wait_line(page, f"{name} closed: code=4001 reason={reason} clean=true")
    seen = wait_for(lambda: [c for c in closes(daemon) if c["reason"] == reason])
    assert seen == [{"protocol": server_protocol, "code": 4001, "reason": reason, "path": "/"}]

    # The server closes; the page sees its code and reason.
    page.click("#create")
    wait_line(page, f"{name} opened", count=2)
    server_reason = f"server closes {tag}"
    send(page, f"close 4002 {server_reason}")
    wait_line(page, f"{name} closed: code=4002 reason={server_reason} clean=true")
    seen = wait_for(lambda: [c for c in closes(daemon) if c["reason"] == server_reason])
    assert seen == [{"protocol": server_protocol, "code": 4002, "reason": server_reason, "path": "/"}]
    assert page.evaluate("ws.readyState") == 3
    assert f"{name} error" not in log_lines(page)
    if transport != "websocket":  # the page names the transport it uses, not "WebSocket"
        assert not [line for line in log_lines(page) if "WebSocket" in line]


def test_websocket(page, daemon):
    converse(page, daemon.http_url, "transport=websocket", "websocket", daemon, "websocket")


def test_forced_long_polling(page, daemon):
    converse(page, daemon.http_url, "transport=long-polling", "long-polling", daemon, "long-polling")


def test_auto_prefers_websocket(page, daemon):
    converse(page, daemon.http_url, "transport=auto", "websocket", daemon, "auto")


def test_fallback_when_websocket_is_reset(page, daemon):
    proxy = UpgradeBlockingProxy(daemon.port, mode="reset")
    try:
        started = time.monotonic()
        # A long open timeout: the fallback must come from the close before open.
        converse(page, proxy.http_url, "transport=auto&timeout=30000", "long-polling", daemon, "reset")
        assert time.monotonic() - started < 25
        assert proxy.blocked >= 2  # both connections of the page tried WebSocket first
    finally:
        proxy.close()


def test_fallback_when_websocket_never_opens(page, daemon):
    proxy = UpgradeBlockingProxy(daemon.port, mode="hang")
    try:
        converse(page, proxy.http_url, "transport=auto&timeout=1500", "long-polling", daemon, "hang")
        assert proxy.blocked >= 2
    finally:
        proxy.close()


def test_plain_websocket_on_the_test_page(page, daemon):
    """The article's page still works with the browser's own WebSocket."""
    page.goto(f"{daemon.http_url}/?transport=native")
    wait_line(page, "WebSocket (native) opened")
    send(page, UNICODE)
    wait_line(page, f"WebSocket (native) message: {UNICODE}")
    page.fill("#code", "4003")
    page.fill("#reason", "native bye")
    page.click("#close")
    wait_line(page, "WebSocket (native) closed: code=4003 reason=native bye clean=true")
    seen = wait_for(lambda: [c for c in closes(daemon) if c["reason"] == "native bye"])
    assert seen[0]["code"] == 4003 and seen[0]["protocol"] == "rfc6455"


def status_connections(daemon) -> int:
    with urllib.request.urlopen(f"{daemon.http_url}/status", timeout=5) as response:
        return json.load(response)["connections"]


@pytest.mark.parametrize("transport, name", [("websocket", "WebSocket"), ("long-polling", "long-polling")])
def test_connect_replaces_the_open_connection(page, daemon_factory, transport, name):
    """The page connects on load; Connect then closes that one first: one connection at a time."""
    d = daemon_factory(app=APP)
    page.goto(f"{d.http_url}/?transport={transport}")
    wait_line(page, f"{name} opened")
    assert wait_for(lambda: status_connections(d) == 1)
    page.click("#create")
    wait_line(page, f"{name} opened", count=2)
    wait_line(page, f"{name} closed: code=1000 reason=replaced by a new connection clean=true")
    seen = wait_for(lambda: [c for c in closes(d) if c["reason"] == "replaced by a new connection"])
    assert seen[0]["code"] == 1000
    assert wait_for(lambda: status_connections(d) == 1)
    time.sleep(0.5)
    assert status_connections(d) == 1
    assert page.inner_text("#state") == f"open over {name}"
    send(page, "still here")
    wait_line(page, f"{name} message: still here")
    assert len([line for line in log_lines(page) if line == f"{name} message: still here"]) == 1


def test_client_api_details(page, daemon):
    """Surface details of wsdaemon.js: errors like WebSocket's, bufferedAmount, events, no transport."""
    page.goto(f"{daemon.http_url}/?transport=long-polling")
    wait_line(page, "long-polling opened")
    result = page.evaluate(
        """() => {
          const out = {};
          try { ws.close(1006); } catch (e) { out.badCode = e.name; }
          try { ws.close(1000, 'x'.repeat(124)); } catch (e) { out.longReason = e.name; }
          try { new WsDaemon('ws://' + location.host + '/', {transports: ['carrier-pigeon']}); }
          catch (e) { out.badTransport = e.name; }
          out.buffered = typeof ws.bufferedAmount;
          out.constants = [WsDaemon.CONNECTING, WsDaemon.OPEN, WsDaemon.CLOSING, WsDaemon.CLOSED];
          return out;
        }"""
    )
    assert result == {
        "badCode": "InvalidAccessError",
        "longReason": "SyntaxError",
        "badTransport": "SyntaxError",
        "buffered": "number",
        "constants": [0, 1, 2, 3],
    }
    # addEventListener, Blob sends, and a client on a path with a query.
    page.evaluate(
        """() => new Promise((resolve) => {
          window.lpResult = [];
          const c = new WsDaemon('ws://' + location.host + '/room/7?x=1', {transports: ['long-polling']});
          c.binaryType = 'arraybuffer';
          c.addEventListener('open', () => { c.send(new Blob([new Uint8Array([9, 8, 7])])); c.send('info'); });
          c.addEventListener('message', (e) => {
            window.lpResult.push(typeof e.data === 'string' ? e.data : Array.from(new Uint8Array(e.data)).join(','));
            if (window.lpResult.length === 3) { c.close(); resolve(); }
          });
        })"""
    )
    welcome, binary, info = page.evaluate("window.lpResult")
    assert welcome == "welcome long-polling" and binary == "9,8,7"
    assert '"path": "/room/7"' in info and '"query": {"x": ["1"]}' in info
    # No transport can open: error, then close 1006.
    outcome = page.evaluate(
        """() => new Promise((resolve) => {
          const events = [];
          const c = new WsDaemon('ws://127.0.0.1:9/', {transports: ['websocket', 'long-polling'], openTimeout: 3000});
          c.onerror = () => events.push('error');
          c.onclose = (e) => { events.push('close ' + e.code + ' ' + e.wasClean); resolve(events); };
        })"""
    )
    assert outcome == ["error", "close 1006 false"]


def test_long_polling_through_a_lossy_proxy_loses_nothing(page, daemon):
    """Responses to polls and posts cut mid-way: every message arrives once, in order, both ways."""
    proxy = UpgradeBlockingProxy(daemon.port, mode="reset")
    try:
        page.goto(f"{proxy.http_url}/?transport=long-polling")
        wait_line(page, "long-polling opened")
        proxy.cut_responses(20, seed=7)
        commands = []
        expected = []
        for i in range(40):
            if i % 8 == 3:
                commands.append("burst 15 300")
                expected += [f"{n:06d} " + "x" * 300 for n in range(15)]
            else:
                commands.append(f"c{i} ✓")
                expected.append(f"c{i} ✓")
        page.evaluate(
            """(commands) => {
              window.got = [];
              ws.onmessage = (e) => window.got.push(e.data);
              commands.forEach((c, i) => setTimeout(() => ws.send(c), i * 20));
            }""",
            commands,
        )
        page.wait_for_function("(n) => window.got.length >= n", arg=len(expected), timeout=60000)
        time.sleep(0.5)  # nothing more may come: no duplicates after the last one
        got = page.evaluate("window.got")
        assert got == expected
        assert proxy.cuts >= 10, proxy.cuts
        assert page.evaluate("ws.readyState") == 1
        page.click("#close")
        wait_line(page, "long-polling closed: code=1000 reason=bye clean=true")
    finally:
        proxy.close()
