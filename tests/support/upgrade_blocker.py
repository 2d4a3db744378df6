"""A TCP proxy that breaks WebSocket upgrades, as some real proxies do, and passes all else.

The browser tests load the page through it so that WebSocket cannot open and the
client has to fall back to long-polling. Modes for an upgrade request:

- ``reset``: the connection is closed at once (the WebSocket closes before opening);
- ``hang``: the request is swallowed and never answered (the open times out).

:attr:`UpgradeBlockingProxy.block_upgrades` turns the blocking on and off while it
runs, and :meth:`UpgradeBlockingProxy.cut_all` resets every connection it carries
(a network change, as the session resume tests need).

Only the first request of a connection is inspected: browsers open a new
connection for every WebSocket.

:meth:`UpgradeBlockingProxy.cut_responses` also makes it cut HTTP responses
mid-way (a reset after some of the bytes), to test that long-polling loses
nothing when polls and posts are lost in transit.
"""

from __future__ import annotations

import random
import socket
import struct
import threading

_HEAD_LIMIT = 65536


class UpgradeBlockingProxy:
    def __init__(
        self, target_port: int, mode: str = "reset", host: str = "127.0.0.1", block_upgrades: bool = True
    ) -> None:
        assert mode in ("reset", "hang")
        self.block_upgrades = block_upgrades
        #: While True every new connection is closed at once (the network is down).
        self.refuse_all = False
        self.target = (host, target_port)
        self.mode = mode
        self.host = host
        self.listener = socket.create_server((host, 0))
        self.port = self.listener.getsockname()[1]
        self.blocked = 0
        self.forwarded = 0
        self.cuts = 0
        self._cuts_left = 0
        self._rng = random.Random(0)
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._closed = False
        threading.Thread(target=self._accept_loop, daemon=True).start()

    @property
    def http_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _track(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.append(sock)

    def _accept_loop(self) -> None:
        while not self._closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.refuse_all:
                _reset(client)
                continue
            self._track(client)
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        head = b""
        try:
            while b"\r\n\r\n" not in head and len(head) < _HEAD_LIMIT:
                chunk = client.recv(65536)
                if not chunk:
                    client.close()
                    return
                head += chunk
        except OSError:
            client.close()
            return
        if self.block_upgrades and b"upgrade: websocket" in head.lower():
            with self._lock:
                self.blocked += 1
            if self.mode == "reset":
                client.close()
            return  # "hang": keep it open and silent until the proxy stops
        try:
            upstream = socket.create_connection(self.target, timeout=10)
        except OSError:
            client.close()
            return
        upstream.settimeout(None)
        self._track(upstream)
        with self._lock:
            self.forwarded += 1
        upstream.sendall(head)
        threading.Thread(target=self._pipe_back, args=(upstream, client), daemon=True).start()
        _pipe(client, upstream)

    def cut_responses(self, count: int, seed: int = 1) -> None:
        """Cut the next ``count`` responses (chosen at random) after a random number of bytes."""
        with self._lock:
            self._rng = random.Random(seed)
            self._cuts_left = count

    def _pipe_back(self, upstream: socket.socket, client: socket.socket) -> None:
        """Server to client, cutting the stream when :meth:`cut_responses` asks for it."""
        passed = 0
        cut_at = None
        try:
            while True:
                data = upstream.recv(65536)
                if not data:
                    break
                with self._lock:
                    if cut_at is None and self._cuts_left and self._rng.random() < 0.5:
                        cut_at = passed + self._rng.randint(1, 400)
                        self._cuts_left -= 1
                if cut_at is not None and passed + len(data) >= cut_at:
                    client.sendall(data[: cut_at - passed])
                    with self._lock:
                        self.cuts += 1
                    _reset(client)
                    _reset(upstream)
                    return
                client.sendall(data)
                passed += len(data)
            client.shutdown(socket.SHUT_WR)
        except OSError:
            _reset(client)
            _reset(upstream)

    def cut_all(self) -> int:
        """Reset every connection through the proxy now (both sides); returns how many sockets."""
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            _reset(sock)
        return len(sockets)

    def close(self) -> None:
        self._closed = True
        self.listener.close()
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            _reset(sock)


def _reset(sock: socket.socket) -> None:
    """Drop a connection now. ``shutdown`` first: a plain ``close`` does not release a socket
    that another thread is blocked in ``recv`` on, so nothing would reach the peer."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()


def _pipe(src: socket.socket, dst: socket.socket) -> None:
    """Copy ``src`` to ``dst`` until EOF, then half-close ``dst``."""
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
        dst.shutdown(socket.SHUT_WR)
    except OSError:
        _reset(src)
        _reset(dst)
