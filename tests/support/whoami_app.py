"""Test application: tells each client who the daemon thinks it is.

On open it sends one JSON text: ``remote_address``, ``peer_address`` (the socket's
peer when a trusted proxy forwarded the request, else null), ``secure`` and the
transport. ``who`` gets the same JSON again; any other message is echoed.
"""

import json

from wsdaemon.application import Application

app = Application("whoami")


def who(conn) -> str:
    request = conn.request
    return json.dumps(
        {
            "remote_address": list(request.remote_address),
            "peer_address": list(request.peer_address) if request.peer_address else None,
            "secure": request.secure,
            "protocol": conn.protocol,
        }
    )


@app.on_open
def opened(conn):
    conn.send(who(conn))


@app.on_message
def message(conn, message):
    conn.send(who(conn) if message == "who" else message)
