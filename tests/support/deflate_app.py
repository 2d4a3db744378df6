"""Application for the permessage-deflate end-to-end tests: echo, plus commands.

``compression?`` answers what ``conn.compression`` says; ``plain:TEXT`` sends TEXT with
``compress=False``, ``force:TEXT`` with ``compress=True``; ``broadcast:TEXT`` broadcasts TEXT;
``stats?`` answers the zlib memory every compressing connection holds. Clients on the path
``/nocompress`` are refused compression by the application, at the handshake.
"""

import json

from wsdaemon.application import Application

app = Application("deflate-e2e", compression=lambda request: request.path != "/nocompress")


def describe(params):
    if params is None:
        return None
    return {
        "server_no_context_takeover": params.server_no_context_takeover,
        "client_no_context_takeover": params.client_no_context_takeover,
        "server_max_window_bits": params.server_max_window_bits,
        "client_max_window_bits": params.client_max_window_bits,
        "header": params.response_header,
    }


@app.on_message
def message(conn, msg):
    if isinstance(msg, bytes):
        conn.send(msg)
        return
    command, sep, arg = msg.partition(":")
    if msg == "compression?":
        conn.send(json.dumps(describe(conn.compression)))
    elif msg == "stats?":
        held = [c.deflate.zlib_memory for c in conn.server.connections if hasattr(c, "deflate")]
        conn.send(json.dumps({"compressing": len(held), "zlib_memory": sum(held)}))
    elif sep and command == "plain":
        conn.send(arg, compress=False)
    elif sep and command == "force":
        conn.send(arg, compress=True)
    elif sep and command == "broadcast":
        conn.server.broadcast(arg)
    else:
        conn.send(msg)
