"""Peer: aiohttp's WebSocketResponse as echo or broadcast server.

16 MiB messages, no compression unless ``--deflate`` (aiohttp's defaults), no heartbeat, no access log (a log line per
handshake would dominate the handshake profile).
"""

import asyncio

from aiohttp import WSMsgType, web
from common import MAX_SIZE, parse_args, run

CLIENTS = set()


async def handle(request):
    ws = web.WebSocketResponse(max_msg_size=MAX_SIZE, compress=request.app["deflate"])
    await ws.prepare(request)
    broadcast = request.app["mode"] == "broadcast"
    CLIENTS.add(ws)
    try:
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                targets = list(CLIENTS) if broadcast else (ws,)
                for peer in targets:
                    await peer.send_str(msg.data)
            elif msg.type == WSMsgType.BINARY:
                targets = list(CLIENTS) if broadcast else (ws,)
                for peer in targets:
                    await peer.send_bytes(msg.data)
    finally:
        CLIENTS.discard(ws)
    return ws


async def main(args):
    app = web.Application()
    app["mode"] = args.mode
    app["deflate"] = args.deflate
    app.router.add_get("/", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, args.host, args.port, backlog=1024).start()
    await asyncio.Event().wait()


if __name__ == "__main__":
    ARGS = parse_args(__doc__)
    run(lambda: main(ARGS), ARGS.uvloop)
