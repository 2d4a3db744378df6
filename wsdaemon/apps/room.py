"""Every connection joins one room; every message is published to it, the sender included.

The room counterpart of ``wsdaemon.apps.broadcast`` (bench profile r).
"""

from wsdaemon.application import Application

app = Application("room")
ROOM = "bench"


@app.on_open
def joined(conn):
    conn.join(ROOM)


@app.on_message
def relay(conn, message):
    conn.server.publish(ROOM, message)
