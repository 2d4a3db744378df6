"""Application for the fault tests: counts opens and closes, so a test can check on_close ran exactly once."""

import json

from wsdaemon.application import Application

app = Application("faults")
stats = {"open": 0, "close": 0, "twice": 0, "codes": {}}


@app.on_open
def opened(conn):
    conn.data = {"closes": 0}
    stats["open"] += 1


@app.on_message
def message(conn, msg):
    if msg == "stats":
        conn.send(json.dumps({**stats, "connections": len(conn.server.connections)}))
    elif msg == "big":
        conn.send("b" * (4 * 1024 * 1024))  # text: every transport carries it
    else:
        conn.send(msg)


@app.on_close
def closed(conn, code, reason):
    conn.data["closes"] += 1
    if conn.data["closes"] > 1:
        stats["twice"] += 1
    stats["close"] += 1
    stats["codes"][str(code)] = stats["codes"].get(str(code), 0) + 1
