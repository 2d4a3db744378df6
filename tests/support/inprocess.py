"""In-process tests of the I/O layers: socket pairs with tiny buffers and an EventLoop the test drives.

The test runs the loop one iteration at a time (:func:`turn`) and plays the
client on the other end of a :func:`small_socketpair`, reading as slowly as it
likes: nothing runs in another thread, so every interleaving is the test's choice.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

from wsdaemon.application import Application
from wsdaemon.net.deadlines import Deadlines
from wsdaemon.net.loop import EVENT_READ, EventLoop
from wsdaemon.server import Server
from wsdaemon.settings import Settings
from wsdaemon.transports.http import HttpConnection

#: Socket buffer size asked for on both ends (Linux doubles it).
SMALL_BUFFER = 4096
#: The address a test's server side pretends its client has.
CLIENT_ADDRESS = ("127.0.0.1", 40000)


def small_socketpair(size: int = SMALL_BUFFER) -> tuple[socket.socket, socket.socket]:
    """(server side, client side) of a stream pair whose buffers hold only a few KiB."""
    server_side, client_side = socket.socketpair()
    for sock in (server_side, client_side):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, size)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)
    server_side.setblocking(False)
    client_side.setblocking(False)
    return server_side, client_side


def turn(loop: EventLoop) -> None:
    """Run exactly one iteration of ``loop``: corked writes, ready I/O, due timers, soon-calls."""
    loop.call_soon(loop.stop)
    loop.run()


class StubHost:
    """The smallest :class:`~wsdaemon.net.stream.StreamHost`: no server, only what net needs."""

    def __init__(self, **settings) -> None:
        self.loop = EventLoop()
        self.settings = Settings(**settings)
        self.deadlines = Deadlines(self.loop)
        #: Descriptors reported by ``client_closed``, in order.
        self.closed: list[int] = []

    def watch(self, conn) -> None:
        self.deadlines.watch(conn)

    def unwatch(self, conn) -> None:
        self.deadlines.unwatch(conn)

    def client_closed(self, fileno: int) -> None:
        self.closed.append(fileno)


def echo_app() -> Application:
    """Sends every message back; remembers the connections it saw open."""
    app = Application("echo")
    app.opened = []  # type: ignore[attr-defined]

    @app.on_open
    def opened(conn):
        app.opened.append(conn)  # type: ignore[attr-defined]

    @app.on_message
    def echo(conn, message):
        conn.send(message)

    return app


def make_server(app: Application | None = None, **settings) -> Server:
    """The real composition root on a fresh loop, never started: no listener, no signals."""
    options = {"host": "127.0.0.1", "port": 0, "workers": 0, **settings}
    return Server(app or echo_app(), Settings(**options), EventLoop())


def connect(server: Server, size: int = SMALL_BUFFER) -> tuple[HttpConnection, socket.socket]:
    """A client socket served by a new HttpConnection, as the listener would set it up."""
    server_side, client_side = small_socketpair(size)
    conn = HttpConnection(server, server_side, CLIENT_ADDRESS)
    server.loop.register(server_side, EVENT_READ, conn)
    return conn, client_side


class SlowReader:
    """The client end: sends what the test says and reads at most ``chunk`` bytes per loop turn."""

    def __init__(self, loop: EventLoop, sock: socket.socket, chunk: int = 1024) -> None:
        self.loop = loop
        self.sock = sock
        self.chunk = chunk
        self.received = bytearray()
        self.eof = False

    def send(self, data: bytes) -> None:
        """Send all of ``data``, turning the loop while the server's buffer is full."""
        view = memoryview(data)
        deadline = time.monotonic() + 5
        while view:
            try:
                view = view[self.sock.send(view) :]
            except BlockingIOError:
                assert time.monotonic() < deadline, "the server does not read"
                turn(self.loop)

    def read_some(self) -> bytes:
        try:
            data = self.sock.recv(self.chunk)
        except BlockingIOError:
            return b""
        except ConnectionError:
            data = b""
        if not data:
            self.eof = True
        self.received += data
        return data

    def pump(self, until: Callable[[bytearray], bool], timeout: float = 5.0) -> bytearray:
        """Turn the loop and read slowly until ``until(received)`` holds; fail after ``timeout``."""
        deadline = time.monotonic() + timeout
        while not until(self.received):
            if time.monotonic() > deadline:
                raise AssertionError(f"not received within {timeout}s; got {len(self.received)} bytes")
            turn(self.loop)
            if not self.eof:
                self.read_some()
            elif not until(self.received):
                raise AssertionError(
                    f"closed after {len(self.received)} bytes: {bytes(self.received[-300:])!r}"
                )
        return self.received

    def idle(self, turns: int = 5) -> None:
        """Turn the loop ``turns`` times, reading slowly, whatever arrives."""
        for _ in range(turns):
            turn(self.loop)
            if not self.eof:
                self.read_some()

    def take(self, n: int) -> bytes:
        """The first ``n`` received bytes, removed (they must have arrived)."""
        assert len(self.received) >= n
        data = bytes(self.received[:n])
        del self.received[:n]
        return data

    def take_head(self, timeout: float = 5.0) -> bytes:
        """Read (slowly) up to the end of a response head; returns it, terminator included."""
        self.pump(lambda got: b"\r\n\r\n" in got, timeout)
        return self.take(self.received.index(b"\r\n\r\n") + 4)

    def take_response(self, timeout: float = 5.0) -> tuple[bytes, bytes]:
        """(head, body) of the next response, whose body has a Content-Length."""
        head = self.take_head(timeout)
        length = content_length(head)
        self.pump(lambda got: len(got) >= length, timeout)
        return head, self.take(length)

    def close(self) -> None:
        self.sock.close()


def content_length(head: bytes) -> int:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    raise AssertionError(f"no Content-Length in {head!r}")


def status_of(head: bytes) -> int:
    assert head.startswith(b"HTTP/1.1 "), head[:200]
    return int(head[9:12])
