"""Peer: picows (Cython, on uvloop by default here) as echo or broadcast server.

picows' frame-level API, as its own examples use it: each data frame is answered with one frame
of the same opcode (echo), or sent to every open connection (broadcast). Frames up to 16 MiB,
no compression (picows has none), no automatic pings; closes are answered as picows advises.
"""

from common import MAX_SIZE, parse_args, run
from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_create_server

CLIENTS: set[WSTransport] = set()


class Echo(WSListener):
    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type == WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code(), frame.get_close_message())
            transport.disconnect()
        elif frame.msg_type in (WSMsgType.TEXT, WSMsgType.BINARY, WSMsgType.CONTINUATION):
            transport.send(frame.msg_type, frame.get_payload_as_memoryview(), frame.fin)


class FanOut(WSListener):
    def on_ws_connected(self, transport: WSTransport) -> None:
        CLIENTS.add(transport)

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        CLIENTS.discard(transport)

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type == WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code(), frame.get_close_message())
            transport.disconnect()
        elif frame.msg_type in (WSMsgType.TEXT, WSMsgType.BINARY):
            payload = frame.get_payload_as_bytes()
            for client in CLIENTS:
                client.send(frame.msg_type, payload)


async def main(args):
    if args.deflate:
        raise SystemExit("picows has no permessage-deflate")
    listener = Echo if args.mode == "echo" else FanOut
    server = await ws_create_server(
        lambda request: listener(), args.host, args.port, max_frame_size=MAX_SIZE, backlog=1024
    )
    await server.serve_forever()


if __name__ == "__main__":
    ARGS = parse_args(__doc__)
    run(lambda: main(ARGS), ARGS.uvloop)
