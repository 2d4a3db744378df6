"""Test application for the long-polling and browser tests.

Text commands (anything else is echoed back as is; binary is echoed too):

- ``push N``: N messages ``push 1`` .. ``push N`` from timers, 50 ms apart (server pushes)
- ``burst N SIZE``: N numbered messages of about SIZE bytes each, at once
- ``close CODE REASON``: the server closes the connection with CODE and REASON
- ``broadcast TEXT``: ``TEXT`` to every open connection
- ``info``: a JSON description of the connection (protocol, path, query, cookies, ...)

``GET /closes`` answers with every close the application saw, as JSON, so a test
can check the code and reason the server received.
"""

import json

from wsdaemon.application import Application
from wsdaemon.transports.static import respond_http

app = Application("lptest", subprotocols=["chat", "superchat"])
closes: list[dict] = []


@app.on_start
def started(server):
    server.router.routes["/closes"] = serve_closes


def serve_closes(conn, request):
    body = json.dumps(closes).encode()
    respond_http(
        conn, request, 200, [("Content-Type", "application/json"), ("Cache-Control", "no-store")], body
    )


@app.on_open
def opened(conn):
    conn.send(f"welcome {conn.protocol}")


@app.on_message
def message(conn, message):
    if isinstance(message, bytes):
        conn.send(message)
        return
    command, _, rest = message.partition(" ")
    server = conn.server
    if command == "push":
        for i in range(1, int(rest) + 1):
            server.call_later(0.05 * i, _push, conn, f"push {i}")
    elif command == "burst":
        count, size = (int(x) for x in rest.split())
        for i in range(count):
            conn.send(f"{i:06d} " + "x" * size)
    elif command == "close":
        code, _, reason = rest.partition(" ")
        conn.close(int(code), reason)
    elif command == "broadcast":
        server.broadcast(rest)
    elif command == "info":
        request = conn.request
        conn.send(
            json.dumps(
                {
                    "protocol": conn.protocol,
                    "subprotocol": conn.subprotocol,
                    "path": request.path,
                    "query": {k: request.query.getall(k) for k in request.query},
                    "cookies": request.cookies,
                    "remote": list(conn.remote_address),
                    "user_agent": request.headers.get("User-Agent"),
                }
            )
        )
    else:
        conn.send(message)


def _push(conn, text):
    if conn.open:
        conn.send(text)


@app.on_close
def closed(conn, code, reason):
    closes.append({"protocol": conn.protocol, "code": code, "reason": reason, "path": conn.request.path})
