"""Peer: Tornado's WebSocketHandler as echo or broadcast server (on asyncio).

16 MiB messages, no compression (Tornado's default) unless ``--deflate`` (then its
compression defaults), no pings (its default).
"""

import asyncio

from common import MAX_SIZE, parse_args, run
from tornado.web import Application
from tornado.websocket import WebSocketClosedError, WebSocketHandler

CLIENTS = set()
DEFLATE = []  # [True] with --deflate


class Base(WebSocketHandler):
    def check_origin(self, origin):
        return True

    def get_compression_options(self):
        return {} if DEFLATE else None


class Echo(Base):
    def on_message(self, message):
        self.write_message(message, binary=isinstance(message, bytes))


class Broadcast(Base):
    """Every message goes to every open connection, the sender included."""

    def open(self):
        CLIENTS.add(self)

    def on_close(self):
        CLIENTS.discard(self)

    def on_message(self, message):
        binary = isinstance(message, bytes)
        for peer in list(CLIENTS):
            try:
                peer.write_message(message, binary=binary)
            except WebSocketClosedError:
                CLIENTS.discard(peer)


async def main(args):
    handler = Echo if args.mode == "echo" else Broadcast
    if args.deflate:
        DEFLATE.append(True)
    app = Application([(r"/", handler)], websocket_max_message_size=MAX_SIZE)
    app.listen(args.port, args.host, backlog=1024)
    await asyncio.Event().wait()


if __name__ == "__main__":
    ARGS = parse_args(__doc__)
    run(lambda: main(ARGS), ARGS.uvloop)
