"""Application for the hixie end-to-end tests: commands sent as text messages drive it.

Connections opened on ``/observe`` are observers: they are told of every other
connection's close as ``closed <protocol> <path> <code> <reason>``, which is how
the tests see the codes ``on_close`` got.
"""

from wsdaemon.application import Application

app = Application("hixie-e2e", subprotocols=["chat.v1"])

OBSERVER = "observer"


def players(server):
    return [c for c in server.connections if c.data != OBSERVER]


@app.on_open
def opened(conn):
    if conn.request.path == "/observe":
        conn.data = OBSERVER
        conn.send("observing")
        return
    conn.send(f"open {conn.protocol} {conn.subprotocol}")


@app.on_message
def message(conn, msg):
    if isinstance(msg, bytes):
        conn.send(msg)
        return
    command, _, arg = msg.partition(":")
    if command == "send-bytes":
        try:
            conn.send(b"binary")
        except TypeError as exc:
            conn.send(f"TypeError: {exc}")
        else:
            conn.send("no error")
    elif command == "flood":
        for _ in range(int(arg)):
            conn.send("f" * 65536)
    elif command == "close":
        conn.close()
    elif command == "raise":
        raise RuntimeError("application bug on purpose")
    elif command == "broadcast":
        count = conn.server.broadcast(arg, players(conn.server))
        conn.send(f"sent to {count}")
    elif command == "broadcast-bytes":
        count = conn.server.broadcast(arg.encode(), players(conn.server))
        conn.send(f"sent to {count}")
    else:
        conn.send(msg)


@app.on_close
def closed(conn, code, reason):
    if conn.data == OBSERVER:
        return
    note = f"closed {conn.protocol} {conn.request.path} {code} {reason}"
    for other in list(conn.server.connections):
        if other.data == OBSERVER:
            other.send(note)
