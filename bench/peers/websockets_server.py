"""Peer: the ``websockets`` library (asyncio implementation) as echo or broadcast server.

Settings match wsdaemon's benchmark command: 16 MiB messages, no compression
unless ``--deflate`` (then websockets' own permessage-deflate defaults: server
window 12 bits, memLevel 5, context takeover), and no keepalive pings (a
benchmark run is shorter than any sensible interval).
"""

from common import MAX_SIZE, parse_args, run
from websockets.asyncio.server import broadcast, serve

CLIENTS = set()


async def echo(ws):
    async for message in ws:
        await ws.send(message)


async def fan_out(ws):
    """Every message goes to every open connection, the sender included."""
    CLIENTS.add(ws)
    try:
        async for message in ws:
            broadcast(CLIENTS, message)
    finally:
        CLIENTS.discard(ws)


async def main(args):
    handler = echo if args.mode == "echo" else fan_out
    async with serve(
        handler,
        args.host,
        args.port,
        max_size=MAX_SIZE,
        compression="deflate" if args.deflate else None,
        ping_interval=None,
        backlog=1024,
    ) as server:
        await server.serve_forever()


if __name__ == "__main__":
    ARGS = parse_args(__doc__)
    run(lambda: main(ARGS), ARGS.uvloop)
