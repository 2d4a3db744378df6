"""permessage-deflate with headless Chromium: the browser's own offer, what it saw, round trips.

Chromium offers ``permessage-deflate; client_max_window_bits`` on every WebSocket. The test page
shows the agreed extensions (``ws.extensions``); a native WebSocket round-trips text, unicode and
binary through the daemon, small and large (compressed) messages. Fails, never skips, when
Chromium or playwright is missing (tests/install-deps.sh installs them).
"""

from __future__ import annotations

APP = "tests.support.deflate_app:app"
ANSWER = (
    "permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
    "server_max_window_bits=12; client_max_window_bits=12"
)

ROUND_TRIP_JS = """
async (url) => {
  const ws = new WebSocket(url);
  ws.binaryType = "arraybuffer";
  const queue = [];
  let wake = null;
  ws.onmessage = (e) => { queue.push(e.data); if (wake) { wake(); wake = null; } };
  await new Promise((ok, fail) => { ws.onopen = ok; ws.onerror = () => fail(new Error("ws error")); });
  const next = async () => { while (!queue.length) { await new Promise((r) => (wake = r)); } return queue.shift(); };
  const unicode = "привет, мир ✓ 🎮 ½ ".repeat(20);
  const big = JSON.stringify(Array.from({length: 3000}, (_, i) => ({id: i, x: i * 1.5, name: "player" + i})));
  const binary = new Uint8Array(70000).map((_, i) => (i * 7) % 256);
  const results = {extensions: ws.extensions};
  for (const [name, msg] of [["short", "hi"], ["unicode", unicode], ["big", big]]) {
    ws.send(msg);
    results[name] = (await next()) === msg;
  }
  ws.send(binary);
  const got = new Uint8Array(await next());
  results.binary = got.length === binary.length && got.every((b, i) => b === binary[i]);
  ws.send(new Uint8Array([0, 1, 2, 127, 128, 255]));
  results.small_binary = Array.from(new Uint8Array(await next())).join(",");
  ws.send("compression?");
  results.server_view = JSON.parse(await next());
  ws.close(1000, "done");
  return results;
}
"""


def test_chromium_negotiates_and_round_trips(page, daemon_factory):
    d = daemon_factory(app=APP)
    page.goto(f"{d.http_url}/?transport=websocket")
    page.wait_for_function(
        "t => Array.from(document.querySelectorAll('#log div')).some(d => d.textContent === t)",
        arg=f"WebSocket extensions: {ANSWER}",
    )
    assert page.evaluate("ws.extensions") == ANSWER

    results = page.evaluate(ROUND_TRIP_JS, d.url)
    assert results["extensions"] == ANSWER
    assert {k: results[k] for k in ("short", "unicode", "big", "binary")} == dict.fromkeys(
        ("short", "unicode", "big", "binary"), True
    )
    assert results["small_binary"] == "0,1,2,127,128,255"
    assert results["server_view"]["header"] == ANSWER


def test_chromium_without_compression(page, daemon_factory):
    d = daemon_factory("--compression", "off", app=APP)
    page.goto(f"{d.http_url}/?transport=websocket")
    page.wait_for_function(
        "t => Array.from(document.querySelectorAll('#log div')).some(d => d.textContent === t)",
        arg="WebSocket extensions: none",
    )
    results = page.evaluate(ROUND_TRIP_JS, d.url)
    assert results["extensions"] == ""
    assert results["big"] and results["binary"] and results["server_view"] is None
