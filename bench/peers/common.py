"""Command line shared by the Python peer servers, and the loop they run on.

Every peer takes the same arguments so that bench/run.py starts them all alike:
``--host --port --mode echo|broadcast [--uvloop] [--deflate]``. The loop factory is the one
place where uvloop is chosen, so "X" and "X+uvloop" differ in nothing else.
"""

import argparse
import asyncio

MAX_SIZE = 16 * 1024 * 1024  # same limit as wsdaemon's --max-message-size


def parse_args(description: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--mode", choices=("echo", "broadcast"), default="echo")
    parser.add_argument("--uvloop", action="store_true", help="run on uvloop instead of asyncio")
    parser.add_argument(
        "--deflate", action="store_true", help="negotiate permessage-deflate with the library's defaults"
    )
    return parser.parse_args()


def run(main, use_uvloop: bool) -> None:
    """Run the coroutine function ``main`` forever on asyncio or uvloop."""
    factory = None
    if use_uvloop:
        import uvloop

        factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(main())
