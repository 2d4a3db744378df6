"""Test application for resumable sessions: records its callbacks, publishes numbered chat lines.

Text commands (anything else is echoed back):

- ``publish N MS``: ``chat 1`` .. ``chat N`` to this session, one every ``MS`` milliseconds
- ``close CODE REASON``: the server closes the session
- ``later MS N SIZE``: after MS milliseconds, N messages ``later I xxx...`` of about SIZE bytes
- ``keyed MS N``: after MS milliseconds, ``state 1`` .. ``state N`` sent with ``key="state"``
- ``join ROOM`` / ``rooms``: join a room / the rooms as JSON; ``room ROOM TEXT``: publish to a room

``GET /callbacks`` answers every callback the application saw, as JSON;
``GET /session-page`` is a page that opens ``wsdaemon.js`` as the query says
(``transports=websocket,long-polling``) and records what it receives in ``window.got``.
"""

import json

from wsdaemon.application import Application

app = Application("sessiontest")
callbacks: list[dict] = []


def record(kind, conn, **extra):
    callbacks.append(
        {"event": kind, "session": getattr(conn, "id", None), "protocol": conn.protocol, **extra}
    )


@app.route("/callbacks")
def serve_callbacks(request):
    return callbacks


@app.on_open
def opened(conn):
    record("open", conn, path=conn.request.path, query=dict(conn.request.query))
    conn.send("welcome")


@app.on_resume
def resumed(conn):
    record("resume", conn)


@app.on_close
def closed(conn, code, reason):
    record("close", conn, code=code, reason=reason)


@app.on_message
def message(conn, message):
    if isinstance(message, bytes):
        conn.send(message)
        return
    command, _, rest = message.partition(" ")
    if command == "publish":
        count, interval = (int(x) for x in rest.split())
        for i in range(1, count + 1):
            conn.server.call_later(interval * i / 1000, _publish, conn, f"chat {i}")
    elif command == "later":
        delay, count, size = (int(x) for x in rest.split())
        conn.server.call_later(delay / 1000, _later, conn, count, size)
    elif command == "keyed":
        delay, count = (int(x) for x in rest.split())
        conn.server.call_later(delay / 1000, _keyed, conn, count)
    elif command == "join":
        conn.join(rest)
        conn.send(f"joined {rest}")
    elif command == "rooms":
        conn.send(json.dumps(sorted(conn.rooms)))
    elif command == "room":
        room, _, text = rest.partition(" ")
        conn.server.publish(room, text)
    elif command == "close":
        code, _, reason = rest.partition(" ")
        conn.close(int(code), reason)
    else:
        conn.send(message)


def _later(conn, count, size):
    for i in range(1, count + 1):
        if conn.open:
            conn.send(f"later {i} " + "x" * size)


def _keyed(conn, count):
    for i in range(1, count + 1):
        if conn.open:
            conn.send(f"state {i}", key="state")


def _publish(conn, text):
    if conn.open:
        conn.send(text)


PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>sessions</title>
<script src="/wsdaemon.js"></script></head><body><script>
var params = new URLSearchParams(location.search);
window.got = []; window.events = [];
function connect() {
  var options = {openTimeout: Number(params.get('timeout') || 3000)};
  if (params.get('transports')) { options.transports = params.get('transports').split(','); }
  var scheme = location.protocol === 'https:' ? 'wss://' : 'ws://';
  var ws = new WsDaemon(scheme + location.host + '/chat', options);
  ws.onopen = function () { window.events.push('open ' + ws.transport); };
  ws.onmessage = function (e) { window.got.push(e.data); };
  ws.onclose = function (e) { window.events.push('close ' + e.code + ' ' + e.reason); };
  ws.addEventListener('resume', function () { window.events.push('resume ' + ws.transport); });
  ws.addEventListener('reconnecting', function () { window.events.push('reconnecting'); });
  window.ws = ws;
}
connect();
</script></body></html>"""


@app.route("/session-page")
def page(request):
    return PAGE
