"""python-socketio with its Redis manager: the cross-node fan-out peer of bench/cluster.py.

Every client joins the room "bench" on connect; an event "pub" from any client is emitted to
the room as "msg". ``AsyncRedisManager`` publishes each emit to Redis and every node, the one
that emitted included, delivers it from its subscription to its own members (python-socketio
sends every message to every node and filters there). aiohttp serves the WebSocket transport;
``--uvloop`` runs it on uvloop.
"""

import argparse

import socketio
from aiohttp import web


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--redis", required=True, help="redis://127.0.0.1:PORT/0")
    parser.add_argument("--uvloop", action="store_true")
    args = parser.parse_args()

    manager = socketio.AsyncRedisManager(args.redis)
    sio = socketio.AsyncServer(async_mode="aiohttp", client_manager=manager, transports=["websocket"])
    app = web.Application()
    sio.attach(app)

    @sio.event
    async def connect(sid, environ):
        await sio.enter_room(sid, "bench")

    @sio.on("pub")
    async def pub(sid, data):
        await sio.emit("msg", data, room="bench")

    loop = None
    if args.uvloop:
        import uvloop

        loop = uvloop.new_event_loop()
    web.run_app(app, host=args.host, port=args.port, print=None, access_log=None, loop=loop)


if __name__ == "__main__":
    main()
