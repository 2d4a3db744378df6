"""A Python client of the session envelope (docs/sessions.md), for tests and load scripts.

It speaks what ``wsdaemon.js`` speaks over WebSocket: ``?wsdaemon_session=new`` or
``ID.TOKEN.ACK``, the ``!h`` hello, messages numbered by their place after it (a text
beginning with ``!`` escaped with one more), and batched ``!a`` acks, on a
``websockets`` connection.
"""

from __future__ import annotations

import json
import socket

from websockets.sync.client import connect

from wsdaemon.proto.session import SESSION_PARAM, decode_control, encode_ack, escape_text


class SessionClient:
    def __init__(
        self,
        url: str,
        resume_from: SessionClient | None = None,
        timeout: float = 10.0,
        compression: str | None = "deflate",
    ) -> None:
        self.base_url = url
        self.timeout = timeout
        if resume_from is None:
            self.session_id = self.token = ""
            self.received_seq = self.sent_seq = 0
            self.outbox: list[tuple[int, str | bytes]] = []
        else:
            self.session_id, self.token = resume_from.session_id, resume_from.token
            self.received_seq, self.sent_seq = resume_from.received_seq, resume_from.sent_seq
            self.outbox = list(resume_from.outbox)
        param = "new" if resume_from is None else f"{self.session_id}.{self.token}.{self.received_seq}"
        sep = "&" if "?" in url else "?"
        self.ws = connect(
            f"{url}{sep}{SESSION_PARAM}={param}", open_timeout=timeout, compression=compression
        ).__enter__()
        self.acks_received: list[int] = []
        self.hello = self._read_hello()
        #: The number of the server's next message on this connection.
        self.next_seq = self.hello["next"]

    def _read_hello(self) -> dict:
        frame = self.ws.recv(timeout=self.timeout)
        assert isinstance(frame, str) and frame.startswith("!h"), frame
        hello = json.loads(frame[2:])
        self.session_id, self.token = hello["session"], hello["token"]
        self._acked(hello["ack"])
        return hello

    def _acked(self, ack: int) -> None:
        self.outbox = [(seq, m) for seq, m in self.outbox if seq > ack]

    def send(self, message: str | bytes) -> int:
        """Number ``message`` (by its place), keep it until acknowledged, send it."""
        self.sent_seq += 1
        self.outbox.append((self.sent_seq, message))
        self._write(message)
        return self.sent_seq

    def _write(self, message: str | bytes) -> None:
        self.ws.send(escape_text(message) if isinstance(message, str) else message)

    def resend_unacknowledged(self) -> None:
        """After the hello: what the server did not have, from its ack + 1 (as wsdaemon.js does)."""
        for _seq, message in self.outbox:
            self._write(message)

    def recv(self, timeout: float | None = None) -> tuple[int, str | bytes]:
        """The next numbered message (acks are recorded on the way); replays already seen are kept too."""
        while True:
            frame = self.ws.recv(timeout=self.timeout if timeout is None else timeout)
            if isinstance(frame, str) and frame[:1] == "!":
                kind, ack = decode_control(frame)
                if kind == "ack":
                    self.acks_received.append(ack)
                    self._acked(ack)
                    continue
                frame = frame[1:]
            seq, self.next_seq = self.next_seq, self.next_seq + 1
            if seq > self.received_seq:
                assert seq == self.received_seq + 1, (seq, self.received_seq)
                self.received_seq = seq
            return seq, frame

    def ack(self) -> None:
        self.ws.send(encode_ack(self.received_seq))

    def drop(self) -> None:
        """Cut the TCP connection without a close frame (a network change)."""
        sock = self.ws.socket
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        sock.close()

    def close(self, code: int = 1000, reason: str = "") -> None:
        self.ws.close(code, reason)
