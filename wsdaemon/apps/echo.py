"""Sends every message back exactly as received: the conformance suite and benchmarks use it."""

from wsdaemon.application import Application

app = Application("echo")


@app.on_message
def echo(conn, message):
    conn.send(message)
