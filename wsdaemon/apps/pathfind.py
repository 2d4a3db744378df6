"""Path search in worker processes while the loop keeps echoing: the article's game, in small.

    wsdaemon run --app wsdaemon.apps.pathfind:app --workers 2

then open http://HOST:8081/pathfind. The page draws a random terrain, sends it
with a ``{"type": "path", ...}`` message, and a worker runs A* over it (a second
or more of pure-Python CPU for the large grids); the answer is pushed back when
it is ready. Meanwhile the page pings the daemon four times a second and shows
the round trip: it stays at a millisecond or so, because the search never runs
in the loop. Any message that is not a path request is echoed at once.

Messages (JSON text):

- ``{"type": "path", "width": W, "height": H, "cells": BASE64}`` where ``cells``
  holds W*H bytes, row by row: 0 is a wall, 1..9 the cost of entering the cell.
  The path goes from the top-left to the bottom-right corner.
  An optional ``"id"`` (integer or string) is echoed in the answer: the page
  drops answers to requests it has replaced ("New terrain" during a search).
- answer ``{"type": "path", "path": [cell indices] | null, "cost": C, "expanded": N,
  "ms": T, "worker": PID, "id": ID}`` or ``{"type": "error", "error": TYPE, "message": TEXT, "id": ID}``.
  One search runs per connection; a request during it is answered ``Busy``.
"""

from __future__ import annotations

import base64
import binascii
import heapq
import json
import os
import time

from wsdaemon.application import Application
from wsdaemon.tasks import TaskError

app = Application("pathfind")

MAX_SIDE = 2000


@app.task(idempotent=True, timeout=120)
def find_path(width: int, height: int, cells: str, start: int = 0, goal: int | None = None) -> dict:
    """A* over a weighted grid from cell ``start`` to ``goal`` (default: corner to corner); runs in a worker.

    The arena demo (``wsdaemon.apps.arena``) declares this same function as its bots' task.
    """
    started = time.perf_counter()
    grid = base64.b64decode(cells)
    if len(grid) != width * height:
        raise ValueError(f"cells holds {len(grid)} bytes, not width*height = {width * height}")
    goal = width * height - 1 if goal is None else goal
    for name, cell in (("start", start), ("goal", goal)):
        if isinstance(cell, bool) or not isinstance(cell, int) or not 0 <= cell < width * height:
            raise ValueError(f"{name} must be a cell index from 0 to {width * height - 1}")
    path, cost, expanded = astar(grid, width, height, start, goal)
    return {
        "path": path,
        "cost": cost,
        "expanded": expanded,
        "ms": round((time.perf_counter() - started) * 1000, 1),
        "worker": os.getpid(),
    }


def astar(grid: bytes, width: int, height: int, start: int, goal: int) -> tuple[list | None, int, int]:
    """(path as cell indices or None, its cost, cells expanded); 4-neighbour moves."""
    if not grid[start] or not grid[goal]:
        return None, 0, 0
    gx, gy = goal % width, goal // width
    came = {start: -1}
    cost = {start: 0}
    heap = [(0, 0, start)]
    expanded = 0
    push, pop = heapq.heappush, heapq.heappop
    while heap:
        _, g, cur = pop(heap)
        if cur == goal:
            break
        if g != cost[cur]:
            continue
        expanded += 1
        x, y = cur % width, cur // width
        for nx, ny in ((x + 1, y), (x - 1, y), (x, y + 1), (x, y - 1)):
            if 0 <= nx < width and 0 <= ny < height:
                n = ny * width + nx
                step = grid[n]
                if not step:
                    continue
                ng = g + step
                if ng < cost.get(n, 1 << 62):
                    cost[n] = ng
                    came[n] = cur
                    push(heap, (ng + abs(gx - nx) + abs(gy - ny), ng, n))
    else:
        return None, 0, expanded
    path = []
    cur = goal
    while cur != -1:
        path.append(cur)
        cur = came[cur]
    path.reverse()
    return path, cost[goal], expanded


@app.on_open
def opened(conn) -> None:
    conn.data = {"searching": False}


@app.on_message
def message(conn, text) -> None:
    request = None
    if isinstance(text, str) and text.startswith("{"):
        try:
            request = json.loads(text)
        except (ValueError, RecursionError):
            request = None
    if not isinstance(request, dict) or request.get("type") != "path":
        conn.send(text)  # everything else is an echo, answered at once
        return
    echo = _request_id(request)
    try:
        width, height, cells = _validate(request)
    except ValueError as exc:
        return _send(conn, {"type": "error", "error": "BadRequest", "message": str(exc), **echo})
    if conn.data["searching"]:
        return _send(conn, {"type": "error", "error": "Busy", "message": "one search at a time", **echo})

    def done(future) -> None:
        conn.data["searching"] = False
        try:
            answer = {"type": "path", **future.result(), **echo}
        except TaskError as exc:
            answer = {"type": "error", "error": exc.type, "message": exc.message, **echo}
        _send(conn, answer)

    try:
        find_path.submit(width, height, cells, callback=done)
    except TaskError as exc:  # no worker pool, or the queue is full: say so now
        return _send(conn, {"type": "error", "error": exc.type, "message": exc.message, **echo})
    conn.data["searching"] = True


def _request_id(request: dict) -> dict:
    """``{"id": ID}`` to echo in the answer, so the page can match answers to requests."""
    rid = request.get("id")
    if isinstance(rid, bool) or not isinstance(rid, (int, str)):
        return {}
    return {"id": rid}


def _validate(request: dict) -> tuple[int, int, str]:
    width, height, cells = request.get("width"), request.get("height"), request.get("cells")
    if not all(isinstance(v, int) and 2 <= v <= MAX_SIDE for v in (width, height)):
        raise ValueError(f"width and height must be integers from 2 to {MAX_SIDE}")
    if not isinstance(cells, str):
        raise ValueError("cells must be a base64 string")
    try:
        size = len(base64.b64decode(cells, validate=True))
    except (binascii.Error, ValueError):
        raise ValueError("cells is not valid base64") from None
    if size != width * height:
        raise ValueError(f"cells holds {size} bytes, not width*height = {width * height}")
    return width, height, cells


def _send(conn, answer: dict) -> None:
    if conn.open:
        conn.send(json.dumps(answer, separators=(",", ":")))


@app.route("/pathfind")
def page(request) -> str:
    """The demo's page (wsdaemon.js is the daemon's own, at /wsdaemon.js)."""
    return PAGE


PAGE = r"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>wsdaemon: path search in workers</title>
<style>
  body { font-family: sans-serif; margin: 1.5em; }
  canvas { border: 1px solid #888; image-rendering: pixelated; width: 600px; height: 600px; }
  #ping { font-family: monospace; }
  #log { font-family: monospace; white-space: pre-wrap; margin-top: .5em; }
</style>
</head>
<body>
<h1>Path search in worker processes</h1>
<p>
  Grid <select id="size">
    <option value="100">100 x 100</option>
    <option value="200">200 x 200</option>
    <option value="500">500 x 500</option>
    <option value="800" selected>800 x 800</option>
    <option value="1200">1200 x 1200</option>
  </select>
  <button id="search" onclick="search()">New terrain, find path</button>
  <span id="ping">ping: -</span>
</p>
<canvas id="grid" width="800" height="800"></canvas>
<div id="log"></div>
<script src="/wsdaemon.js"></script>
<script>
  // ?transport=auto (the default: WebSocket, then long-polling), websocket or long-polling;
  // ?size=N picks the first grid; ?seed=N makes the terrains repeatable (tests use it).
  var TRANSPORTS = {auto: ['websocket', 'long-polling'], websocket: ['websocket'], 'long-polling': ['long-polling']};
  var url = (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/';
  var asked = /[?&]transport=([^&#]*)/.exec(location.search);
  var transport = asked ? decodeURIComponent(asked[1]) : 'auto';
  var pings = {}, worst = 0, ws = null;
  // One search runs at a time; "New terrain" during it waits as `current` and is
  // sent when the running one's (now stale) answer arrives. Answers carry their request's id.
  var current = null, running = null, lastId = 0;
  function log(text) { document.getElementById('log').textContent = text; }
  var seeded = /[?&]seed=(\d+)/.exec(location.search);
  var random = seeded ? mulberry32(parseInt(seeded[1], 10)) : Math.random;
  function mulberry32(a) {
    return function () {
      a = (a + 0x6D2B79F5) | 0;
      var t = Math.imul(a ^ (a >>> 15), 1 | a);
      t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
  }
  function terrain(n) {
    var cells = new Uint8Array(n * n);
    for (var i = 0; i < cells.length; i++) {
      cells[i] = random() < 0.22 ? 0 : 1 + Math.floor(random() * 5);
    }
    for (var d = 0; d < 3; d++) {  // keep the corners open
      cells[d] = cells[d * n] = cells[n * n - 1 - d] = cells[n * n - 1 - d * n] = 1;
    }
    return cells;
  }
  function draw(cells, n) {
    var canvas = document.getElementById('grid');
    canvas.width = canvas.height = n;
    var ctx = canvas.getContext('2d'), img = ctx.createImageData(n, n);
    for (var i = 0; i < cells.length; i++) {
      var v = cells[i] === 0 ? 30 : 255 - cells[i] * 30;
      img.data[4 * i] = img.data[4 * i + 1] = img.data[4 * i + 2] = v;
      img.data[4 * i + 3] = 255;
    }
    ctx.putImageData(img, 0, 0);
  }
  function drawPath(path, n) {
    var ctx = document.getElementById('grid').getContext('2d');
    ctx.fillStyle = '#e0201c';
    var w = Math.max(1, Math.round(n / 300));
    path.forEach(function (c) { ctx.fillRect(c % n, Math.floor(c / n), w, w); });
  }
  function search() {
    if (!ws) { return; }
    var size = parseInt(document.getElementById('size').value, 10);
    var cells = terrain(size), bin = '';
    for (var i = 0; i < cells.length; i += 8192) {
      bin += String.fromCharCode.apply(null, cells.subarray(i, i + 8192));
    }
    draw(cells, size);
    current = {id: ++lastId, size: size, sent: 0,
               text: JSON.stringify({type: 'path', id: lastId, width: size, height: size, cells: btoa(bin)})};
    if (running === null) {
      sendCurrent();
    } else {
      log('new terrain ' + size + ' x ' + size + ': waiting for the running search to finish...');
    }
  }
  function sendCurrent() {
    running = current.id;
    current.sent = performance.now();
    worst = 0;
    ws.send(current.text);
    log('searching ' + current.size + ' x ' + current.size + ' in a worker...');
  }
  function answered(m) {
    if (m.id === running) { running = null; }
    if (!current || m.id !== current.id) {  // the answer to a replaced terrain: drop it
      if (running === null && current && !current.sent) { sendCurrent(); }
      return;
    }
    var size = current.size;
    if (m.type === 'path') {
      if (m.path) { drawPath(m.path, size); }
      log(size + ' x ' + size + ': ' + (m.path ? 'path of ' + m.path.length + ' cells, cost ' + m.cost : 'no path') +
          '; ' + m.expanded + ' cells expanded in ' + m.ms + ' ms by worker ' + m.worker +
          '; answer after ' + (performance.now() - current.sent).toFixed(0) + ' ms over ' +
          (ws.transport || 'websocket'));
    } else {
      log('error: ' + m.error + ': ' + m.message);
    }
  }
  function connect() {
    if (!TRANSPORTS.hasOwnProperty(transport)) {
      document.getElementById('search').disabled = true;
      log('unknown transport: ' + transport + ' (use ?transport=auto, websocket or long-polling)');
      return;
    }
    ws = window.WsDaemon ? new WsDaemon(url, {transports: TRANSPORTS[transport]}) : new WebSocket(url);
    ws.onmessage = function (e) {
      if (e.data.indexOf('ping ') === 0) {
        var rtt = performance.now() - pings[e.data];
        delete pings[e.data];
        worst = Math.max(worst, rtt);
        document.getElementById('ping').textContent =
          'ping: ' + rtt.toFixed(1) + ' ms (worst since search: ' + worst.toFixed(1) + ' ms)';
        return;
      }
      answered(JSON.parse(e.data));
    };
    ws.onopen = function () {
      setInterval(function () {
        var id = 'ping ' + Math.random();
        pings[id] = performance.now();
        ws.send(id);
      }, 250);
      search();
    };
    ws.onclose = function (e) { log('closed: ' + e.code + ' ' + e.reason); };
  }
  var sized = /[?&]size=(\d+)/.exec(location.search);  // e.g. /pathfind?size=200
  if (sized) { document.getElementById('size').value = sized[1]; }
  connect();
</script>
</body>
</html>
"""
