"""Test application for on_connect / Reject, rooms, presence, publish, conflated and volatile sends.

``on_connect`` reads the query: ``token=bad...`` is rejected with 403 "bad token",
``token=boom`` raises (500); otherwise the user is ``name`` (or the token, or None).

Text commands, answered on the same connection:

- ``whoami``: the user; ``join R`` / ``leave R`` / ``leave_all``: membership, then ``rooms [...]``
- ``rooms``: this connection's rooms; ``presence R``: the users in R (JSON)
- ``publish R TEXT``: TEXT to R's members but the sender, answered ``published N``
- ``publish_all R TEXT``: to every member of R, sender included
- ``keyed N KEY SIZE``: first unkeyed ``fill`` messages (64 KiB a tick) until the
  connection is backlogged (the kernel's buffers are full), then N messages ``state I``
  padded to SIZE bytes, with key KEY, in batches from a timer over about 4 s; ``done N``
  (unkeyed) after the last
- ``publish_keyed R N``: N messages ``room-state I`` published to R with key ``pos``, at once
- ``volatile N SIZE``: N volatile messages of SIZE bytes from a timer; then ``volatile-done``
- ``stats``: JSON of replaced, dropped, buffered_amount
- ``broadcast TEXT``: TEXT to every connection (every node with a broker), answered ``broadcast N``
- ``presence_full R``: ``{"users": [...], "stale": bool}`` of ``server.presence(R)``
- ``fetch_presence R``: the same, read from Redis by ``server.fetch_presence`` (``fetched {...}``)
- ``pid``: the serving process's pid (which child of ``--processes`` holds this connection)

``GET /state`` gives the users that reached on_open, the join/leave events and the rooms.
``GET /page`` is a page for the browser test: ``connect(name, transport)`` opens a
WsDaemon client and records what it receives in ``window.got[name]``.
"""

import json
import os

from wsdaemon import Application, Reject

app = Application("roomstest")
opens: list = []
events: list = []
BATCHES = 80
TICK = 0.05


@app.on_connect
def authenticate(request):
    token = request.query.get("token")
    if token is not None and token.startswith("bad"):
        raise Reject(403, "bad token")
    if token == "boom":
        raise RuntimeError("on_connect exploded")
    return request.query.get("name") or token


@app.route("/state")
def state(request):
    server = app.server
    return {
        "opens": opens,
        "events": events,
        "rooms": sorted(server.rooms),
        "presence": {name: server.presence(name) for name in server.rooms},
        "sizes": {name: len(server.room(name)) for name in server.rooms},
        "status": {k: server.status()[k] for k in ("rejected", "on_connect_errors", "rooms")},
    }


PAGE = """<!doctype html>
<meta charset="utf-8"><title>rooms</title>
<script src="/wsdaemon.js"></script>
<script>
window.got = {}; window.socks = {}; window.ended = {};
function connect(name, transport, token) {
  var url = 'ws://' + location.host + '/?name=' + name + (token ? '&token=' + token : '');
  var sock = new WsDaemon(url, {transports: [transport]});
  window.got[name] = []; window.socks[name] = sock;
  sock.onmessage = function (e) { window.got[name].push(e.data); };
  sock.onclose = function (e) { window.ended[name] = e.code; };
  return new Promise(function (resolve) { sock.onopen = function () { resolve(sock.transport); }; });
}
</script>
"""


@app.route("/page")
def page(request):
    return PAGE


@app.on_open
def opened(conn):
    opens.append([conn.protocol, conn.user])


@app.on_join
def joined(conn, room):
    events.append(["join", conn.user, room])


@app.on_leave
def left(conn, room):
    events.append(["leave", conn.user, room])


def reply_rooms(conn):
    conn.send("rooms " + json.dumps(sorted(conn.rooms)))


@app.on_message
def message(conn, data):
    if isinstance(data, bytes):
        conn.send(data)
        return
    command, _, rest = data.partition(" ")
    server = conn.server
    if command == "whoami":
        conn.send(f"user {conn.user}")
    elif command == "pid":
        conn.send(f"pid {os.getpid()}")
    elif command == "join":
        conn.join(rest)
        reply_rooms(conn)
    elif command == "leave":
        conn.leave(rest)
        reply_rooms(conn)
    elif command == "leave_all":
        conn.leave_all()
        reply_rooms(conn)
    elif command == "rooms":
        reply_rooms(conn)
    elif command == "presence":
        conn.send("presence " + json.dumps(sorted(map(str, server.presence(rest)))))
    elif command in ("publish", "publish_all"):
        room, _, text = rest.partition(" ")
        count = server.publish(room, text, exclude=conn if command == "publish" else None)
        conn.send(f"published {count}")
    elif command == "publish_room":
        room, _, text = rest.partition(" ")
        conn.send(f"published {server.room(room).publish(text, exclude=conn)}")
    elif command == "keyed":
        count, key, size = rest.split()
        start_keyed(conn, int(count), key, int(size))
    elif command == "publish_keyed":
        room, _, count = rest.partition(" ")
        for i in range(int(count)):
            server.publish(room, f"room-state {i}", key="pos")
        server.publish(room, "room-done")
    elif command == "volatile":
        count, size = (int(x) for x in rest.split())
        start_volatile(conn, count, size)
    elif command == "broadcast":
        conn.send(f"broadcast {server.broadcast(rest)}")
    elif command == "presence_full":
        presence = server.presence(rest)
        conn.send(
            "presence_full " + json.dumps({"users": sorted(map(str, presence)), "stale": presence.stale})
        )
    elif command == "fetch_presence":

        def fetched(presence, conn=conn):
            if conn.open:
                conn.send(
                    "fetched " + json.dumps({"users": sorted(map(str, presence)), "stale": presence.stale})
                )

        server.fetch_presence(rest, fetched)
    elif command == "stats":
        conn.send(
            "stats "
            + json.dumps(
                {"replaced": conn.replaced, "dropped": conn.dropped, "buffered": conn.buffered_amount}
            )
        )
    else:
        conn.send(data)


def start_keyed(conn, count, key, size):
    per_tick = -(-count // 400)  # 400 ticks of 10 ms
    sent = [0]
    pad = " " + "p" * max(0, size - 14)
    filler = "fill " + "f" * (64 * 1024)

    def tick():
        if not conn.open:
            timer.cancel()
            return
        if not sent[0] and not conn.backlogged:
            conn.send(filler)
            return
        n = min(per_tick, count - sent[0])
        for i in range(sent[0], sent[0] + n):
            conn.send(f"state {i:08d}{pad}", key=key)
        sent[0] += n
        if sent[0] >= count:
            timer.cancel()
            conn.send(f"done {count}")

    timer = conn.server.call_every(0.01, tick)


def start_volatile(conn, count, size):
    per_tick = -(-count // BATCHES)
    sent = [0]
    body = "v" * size

    def tick():
        if not conn.open:
            timer.cancel()
            return
        n = min(per_tick, count - sent[0])
        for i in range(sent[0], sent[0] + n):
            conn.send(f"{i:08d}{body}", volatile=True)
        sent[0] += n
        if sent[0] >= count:
            timer.cancel()
            conn.send("volatile-done")

    timer = conn.server.call_every(TICK, tick)
