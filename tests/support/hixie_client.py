"""Minimal hixie-76 and hixie-75 clients for the tests (no library speaks these drafts).

Written from the drafts, independently of ``wsdaemon.proto.hixie``, and checked
against Debian's faye-websocket server (``test_hixie_faye.py``) before being
used against wsdaemon. Blocking sockets with timeouts; every wait is bounded.
"""

from __future__ import annotations

import hashlib
import random
import socket
import struct
import time

CLOSED = object()  #: what :meth:`HixieClient.recv` returns once the server closed the stream

# The draft's key generation (section 4.1, steps 17-22): characters inserted at random
# are U+0021-U+002F and U+003A-U+007E, i.e. anything printable but digits and space.
_KEY_NOISE = [chr(c) for c in range(0x21, 0x30)] + [chr(c) for c in range(0x3A, 0x7F)]


def make_key(rng: random.Random) -> tuple[str, int]:
    """A Sec-WebSocket-Key as a -76 browser builds it, and the number it encodes."""
    spaces = rng.randint(1, 12)
    number = rng.randint(0, 4294967295 // spaces)
    key = list(str(number * spaces))
    for _ in range(rng.randint(1, 12)):
        key.insert(rng.randint(0, len(key)), rng.choice(_KEY_NOISE))
    for _ in range(spaces):
        key.insert(rng.randint(1, len(key) - 1), " ")
    return "".join(key), number


def expected_answer(number1: int, number2: int, key3: bytes) -> bytes:
    return hashlib.md5(struct.pack(">II", number1, number2) + key3).digest()


class HandshakeFailed(Exception):
    def __init__(self, status: int, head: str, body: bytes) -> None:
        super().__init__(f"handshake answered {status}: {head!r}")
        self.status = status
        self.head = head
        self.body = body


class HixieClient:
    """One connection speaking draft 76 (``draft=76``) or 75 (``draft=75``)."""

    def __init__(
        self,
        host: str,
        port: int,
        draft: int = 76,
        path: str = "/",
        origin: str | None = "http://127.0.0.1",
        subprotocol: str | None = None,
        headers: list[tuple[str, str]] | None = None,
        key1: str | None = None,
        key2: str | None = None,
        key3: bytes | None = None,
        timeout: float = 10.0,
        seed: int | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.draft = draft
        self.path = path
        self.origin = origin
        #: "wss" when the test wraps ``sock`` in TLS: the Location the server must answer.
        self.scheme = "ws"
        self.subprotocol = subprotocol
        self.extra_headers = headers or []
        self.timeout = timeout
        rng = random.Random(seed)
        if draft == 76:
            generated1, self.number1 = make_key(rng)
            generated2, self.number2 = make_key(rng)
            self.key1 = generated1 if key1 is None else key1
            self.key2 = generated2 if key2 is None else key2
            self.key3 = bytes(rng.getrandbits(8) for _ in range(8)) if key3 is None else key3
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        self.status = 0
        self.reason = ""
        self.headers: dict[str, str] = {}
        self.closed_by_server = False

    # -- handshake -------------------------------------------------------------------

    def request_head(self) -> bytes:
        host = f"{self.host}:{self.port}"
        lines = [f"GET {self.path} HTTP/1.1", "Upgrade: WebSocket", "Connection: Upgrade", f"Host: {host}"]
        if self.origin is not None:
            lines.append(f"Origin: {self.origin}")
        if self.draft == 76:
            lines.append(f"Sec-WebSocket-Key1: {self.key1}")
            lines.append(f"Sec-WebSocket-Key2: {self.key2}")
            if self.subprotocol:
                lines.append(f"Sec-WebSocket-Protocol: {self.subprotocol}")
        elif self.subprotocol:
            lines.append(f"WebSocket-Protocol: {self.subprotocol}")
        lines += [f"{name}: {value}" for name, value in self.extra_headers]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def handshake(self, key3_parts: list[int] | None = None, glue: bytes = b"", strict: bool = True) -> None:
        """Send the request (key3 in one go, or split at ``key3_parts``) and check the answer.

        With ``key3_parts``, the head goes alone, then each part after a pause in
        which a ``strict`` server must stay silent: wsdaemon answers only once
        key3 is complete (faye sends its response head early, which the draft's
        clients accept). ``glue`` goes in the same packet as the last bytes of
        the request (the first frames).
        """
        head = self.request_head()
        body = self.key3 if self.draft == 76 else b""
        if key3_parts is None:
            self.sock.sendall(head + body + glue)
        else:
            self.sock.sendall(head)
            cuts = [0, *key3_parts, len(body)]
            for a, b in zip(cuts, cuts[1:], strict=False):
                self.expect_silence(0.1, strict)
                if b == len(body):
                    self.sock.sendall(body[a:b] + glue)
                else:
                    self.sock.sendall(body[a:b])
        self.read_response()

    def expect_silence(self, seconds: float, strict: bool = True) -> None:
        """Wait ``seconds`` for data: with ``strict``, any data fails the test."""
        self.sock.settimeout(seconds)
        try:
            data = self.sock.recv(65536)
        except TimeoutError:
            return
        finally:
            self.sock.settimeout(self.timeout)
        if strict:
            raise AssertionError(f"server sent {data!r} before the request was complete")
        self.buf += data

    def read_response(self) -> None:
        while b"\r\n\r\n" not in self.buf:
            if not self._fill():
                raise ConnectionError(f"server closed during the handshake: {bytes(self.buf)!r}")
        end = self.buf.index(b"\r\n\r\n")
        head = self.buf[:end].decode("latin-1")
        del self.buf[: end + 4]
        status_line, *lines = head.split("\r\n")
        version, status, reason = status_line.split(" ", 2)
        self.status = int(status)
        self.reason = reason
        self.headers = {}
        for line in lines:
            name, _, value = line.partition(":")
            self.headers[name.strip().lower()] = value.strip()
        self.response_head = head
        if self.status != 101:
            while self._fill():
                pass
            raise HandshakeFailed(self.status, head, bytes(self.buf))
        if self.draft == 76:
            assert reason == "WebSocket Protocol Handshake", status_line
            while len(self.buf) < 16:
                if not self._fill():
                    raise ConnectionError("server closed before the 16-byte answer")
            answer = bytes(self.buf[:16])
            del self.buf[:16]
            expected = expected_answer(self._number(self.key1), self._number(self.key2), self.key3)
            assert answer == expected, (answer, expected)
            prefix = "sec-websocket-"
        else:
            assert reason == "Web Socket Protocol Handshake", status_line
            prefix = "websocket-"
        assert self.headers.get("upgrade", "").lower() == "websocket", head
        assert self.headers.get("connection", "").lower() == "upgrade", head
        if self.origin is not None:
            assert self.headers.get(prefix + "origin") == self.origin, head
        location = f"{self.scheme}://{self.host}:{self.port}{self.path}"
        assert self.headers.get(prefix + "location") == location, head

    @staticmethod
    def _number(key: str) -> int:
        digits = int("".join(c for c in key if c.isdigit()))
        return digits // key.count(" ")

    # -- frames ----------------------------------------------------------------------

    def send_text(self, text: str) -> None:
        self.sock.sendall(b"\x00" + text.encode("utf-8") + b"\xff")

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def recv(self, timeout: float | None = None) -> str | object:
        """The next text message, or :data:`CLOSED` once the server sent its close or EOF."""
        deadline = time.monotonic() + (timeout if timeout is not None else self.timeout)
        while True:
            message = self._parse_one()
            if message is not None:
                return message
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("no message from the server")
            self.sock.settimeout(remaining)
            try:
                if not self._fill():
                    self.closed_by_server = True
                    return CLOSED
            finally:
                self.sock.settimeout(self.timeout)

    def _parse_one(self) -> str | object | None:
        buf = self.buf
        while buf:
            frame_type = buf[0]
            if frame_type & 0x80:
                length, i = 0, 1
                while True:
                    if i >= len(buf):
                        return None
                    b = buf[i]
                    i += 1
                    length = length * 128 + (b & 0x7F)
                    if not b & 0x80:
                        break
                if frame_type == 0xFF and length == 0 and self.draft == 76:
                    del buf[:i]
                    return CLOSED
                if len(buf) < i + length:
                    return None
                del buf[: i + length]
                continue
            end = buf.find(b"\xff")
            if end < 0:
                return None
            payload = bytes(buf[1:end])
            del buf[: end + 1]
            if frame_type == 0x00:
                return payload.decode("utf-8")
        return None

    def _fill(self) -> bool:
        data = self.sock.recv(65536)
        if not data:
            return False
        self.buf += data
        return True

    # -- closing -----------------------------------------------------------------------

    def close_handshake(self) -> None:
        """-76: send ``0xFF 0x00``, expect the server's, then its EOF."""
        self.sock.sendall(b"\xff\x00")
        message = self.recv()
        assert message is CLOSED, message
        self.expect_eof()

    def answer_close(self) -> None:
        """-76: the server closed first; answer it and expect its EOF."""
        self.sock.sendall(b"\xff\x00")
        self.expect_eof()

    def expect_eof(self, timeout: float | None = None) -> bytes:
        """Read until the server closes the stream; return what came before."""
        deadline = time.monotonic() + (timeout if timeout is not None else self.timeout)
        rest = bytearray(self.buf)
        self.buf.clear()
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("server did not close the connection")
            self.sock.settimeout(remaining)
            try:
                data = self.sock.recv(65536)
            except ConnectionResetError:
                return bytes(rest)
            if not data:
                return bytes(rest)
            rest += data

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self) -> HixieClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
