"""The article's demo: answer each message with an echo and the server time."""

import time

from wsdaemon.application import Application

app = Application("demo")


@app.on_open
def opened(conn):
    conn.send(f"welcome, you are connected over {conn.protocol}")


@app.on_message
def answer(conn, message):
    if isinstance(message, bytes):
        conn.send(message)
        return
    conn.send(f"echo: {message} (server time {time.strftime('%H:%M:%S')})")
