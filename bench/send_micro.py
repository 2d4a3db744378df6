"""Micro-benchmark of ``conn.send(msg)`` in-process: the per-message cost of a plain send.

An RFC 6455 connection on a socketpair, corked as inside a read callback (the
frames are joined, never sent), so only the Python path of ``send`` is timed:
state check, framing, the corked write. Run it on two checkouts to compare:

    PYTHONPATH=/path/to/checkout python3 bench/send_micro.py
"""

from __future__ import annotations

import socket
import statistics
import timeit

from wsdaemon.net.deadlines import Deadlines
from wsdaemon.net.loop import EventLoop
from wsdaemon.proto.http11 import Headers, Request
from wsdaemon.settings import Settings
from wsdaemon.transports.rfc6455_connection import Rfc6455Connection

N = 2000
REPEAT = 15


class Host:
    def __init__(self) -> None:
        self.loop = EventLoop()
        self.settings = Settings()
        self.deadlines = Deadlines(self.loop)
        self.app = None

    def watch(self, conn) -> None:
        pass

    def unwatch(self, conn) -> None:
        pass

    def client_closed(self, fileno: int) -> None:
        pass


def main() -> None:
    a, b = socket.socketpair()
    host = Host()
    request = Request("GET", "/", "1.1", Headers([]), remote_address=("127.0.0.1", 1))
    conn = Rfc6455Connection(host, a, request, None)
    conn.state = 1  # OPEN
    text = "x" * 32
    data = b"y" * 32

    def run(message) -> None:
        conn._corked = True
        conn._out = None
        send = conn.send
        for _ in range(N):
            send(message)
        conn._out = None

    for label, message in (("text 32 B", text), ("binary 32 B", data)):
        times = timeit.repeat(lambda m=message: run(m), number=20, repeat=REPEAT)
        per = [t / (20 * N) * 1e9 for t in times]
        print(f"send({label}): min {min(per):.0f} ns, median {statistics.median(per):.0f} ns per call")
    a.close()
    b.close()


if __name__ == "__main__":
    main()
