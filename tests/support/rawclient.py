"""A minimal blocking RFC 6455 / HTTP client over raw sockets, for tests that misbehave on purpose.

Libraries refuse to be slow, rude or broken; these helpers do exactly what a
test says, and read the server's frames without any policy of their own.
"""

from __future__ import annotations

import base64
import os
import resource
import socket
import struct
import time

from wsdaemon.proto.rfc6455 import encode_frame

MASK = b"\x01\x02\x03\x04"


def raise_fd_limit(want: int = 8192) -> int:
    """Raise this process's descriptor limit (children inherit it); returns the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def handshake_request(path: str = "/", headers: dict | None = None, host: str = "127.0.0.1") -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    lines = [
        f"GET {path} HTTP/1.1",
        f"Host: {host}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
    ]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def read_head(sock: socket.socket, timeout: float = 10.0) -> tuple[bytes, bytes]:
    """Read up to the end of a response head; returns (head, bytes after it)."""
    sock.settimeout(timeout)
    buf = b""
    while b"\r\n\r\n" not in buf:
        data = sock.recv(65536)
        if not data:
            raise ConnectionError(f"closed during the response head: {buf!r}")
        buf += data
    head, _, rest = buf.partition(b"\r\n\r\n")
    return head, rest


def read_until_closed(sock: socket.socket, timeout: float = 10.0, limit: int = 1 << 20) -> bytes:
    """Everything the server sends until it closes (or the timeout, or ``limit`` bytes)."""
    deadline = time.monotonic() + timeout
    got = bytearray()
    while len(got) < limit:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        sock.settimeout(remaining)
        try:
            data = sock.recv(65536)
        except (TimeoutError, ConnectionError):
            break
        if not data:
            break
        got += data
    return bytes(got)


def http_exchange(host: str, port: int, data: bytes, timeout: float = 10.0) -> bytes:
    """Send ``data`` on a new connection and return the server's whole answer."""
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(data)
        return read_until_closed(s, timeout)


def status_of(response: bytes) -> int:
    assert response.startswith(b"HTTP/1.1 "), response[:200]
    return int(response[9:12])


class RawWebSocket:
    """A client connection: handshake, masked frames out, frames in."""

    def __init__(
        self, host: str, port: int, path: str = "/", headers: dict | None = None, timeout: float = 10.0
    ):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.sendall(handshake_request(path, headers))
        head, self.buf = read_head(self.sock, timeout)
        self.status = int(head[9:12])
        self.head = head

    def send_frame(self, opcode: int, payload: bytes = b"", fin: bool = True) -> None:
        self.sock.sendall(encode_frame(opcode, payload, fin=fin, mask=MASK))

    def send_text(self, text: str) -> None:
        self.send_frame(0x1, text.encode())

    def _fill(self, n: int) -> None:
        while len(self.buf) < n:
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("closed")
            self.buf += data

    def recv_frame(self, timeout: float = 10.0) -> tuple[int, bytes]:
        """(opcode, payload) of the next frame from the server."""
        self.sock.settimeout(timeout)
        self._fill(2)
        b0, b1 = self.buf[0], self.buf[1]
        #: The first byte of the last frame received (FIN, RSV1-3, opcode).
        self.last_b0 = b0
        length, pos = b1 & 0x7F, 2
        if length == 126:
            self._fill(4)
            length, pos = struct.unpack("!H", self.buf[2:4])[0], 4
        elif length == 127:
            self._fill(10)
            length, pos = struct.unpack("!Q", self.buf[2:10])[0], 10
        self._fill(pos + length)
        payload = self.buf[pos : pos + length]
        self.buf = self.buf[pos + length :]
        return b0 & 0x0F, payload

    def recv_until_close(self, timeout: float = 10.0) -> tuple[list, tuple[int, str] | None]:
        """Frames until the server's close frame: (data frames, (code, reason)) or None at EOF."""
        frames = []
        deadline = time.monotonic() + timeout
        while True:
            try:
                opcode, payload = self.recv_frame(max(0.05, deadline - time.monotonic()))
            except (ConnectionError, TimeoutError, OSError):
                return frames, None
            if opcode == 0x8:
                code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
                return frames, (code, payload[2:].decode())
            frames.append((opcode, payload))

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


def close_code_of(payload: bytes) -> int:
    return struct.unpack("!H", payload[:2])[0]
