"""Application for the end-to-end tests: commands sent as text messages drive it."""

import hashlib

from wsdaemon.application import Application

app = Application("e2e", subprotocols=["chat.v2", "chat.v1"])

CHUNK = 1024 * 1024


def chunk_bytes(index: int) -> bytes:
    """Deterministic 1 MiB block number ``index``, so the client can check order and content."""
    seed = hashlib.sha256(index.to_bytes(4, "big")).digest()
    return seed * (CHUNK // len(seed))


@app.on_open
def opened(conn):
    conn.data = {"max_buffered": 0}
    if conn.request.path == "/hello":
        conn.send(f"hello {conn.subprotocol}")


@app.on_message
def message(conn, msg):
    if isinstance(msg, bytes):
        conn.send(msg)
        return
    command, _, arg = msg.partition(":")
    if command == "raise":
        raise RuntimeError("application bug on purpose")
    elif command == "close":
        code, _, reason = arg.partition(":")
        conn.close(int(code), reason)
    elif command == "request":
        r = conn.request
        conn.send(
            repr(
                {
                    "path": r.path,
                    "query": {k: r.query.getall(k) for k in r.query},
                    "cookie": r.cookies.get("session"),
                    "agent": r.headers.get("User-Agent"),
                    "remote": r.remote_address[0],
                    "protocol": conn.protocol,
                    "subprotocol": conn.subprotocol,
                }
            )
        )
    elif command == "count":
        conn.send(str(len(conn.server.connections)))
    elif command == "stream":
        pump(conn, 0, int(arg))
    else:
        conn.send(msg)


def pump(conn, index: int, total: int) -> None:
    """Send ``total`` 1 MiB blocks, keeping at most 4 MiB queued: pacing by ``buffered_amount``."""
    if not conn.open:
        return
    while index < total and conn.buffered_amount < 4 * CHUNK:
        conn.send(chunk_bytes(index))
        index += 1
        conn.data["max_buffered"] = max(conn.data["max_buffered"], conn.buffered_amount)
    if index < total:
        conn.server.call_later(0.005, pump, conn, index, total)
    else:
        conn.send(f"done max_buffered={conn.data['max_buffered']}")
