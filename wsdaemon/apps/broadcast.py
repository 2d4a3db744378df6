"""Every message a client sends goes to every open connection, the sender included."""

from wsdaemon.application import Application

app = Application("broadcast")


@app.on_message
def relay(conn, message):
    conn.server.broadcast(message)
