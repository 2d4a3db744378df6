"""Plain-HTTP long-polling client pieces for the tests (http.client, one connection per role)."""

from __future__ import annotations

import http.client
import json
import socket
import time
import urllib.request


def request(
    conn: http.client.HTTPConnection, method: str, path: str, body: bytes | str | None = None, headers=None
):
    """One request on ``conn``; returns (status, headers dict, parsed JSON or raw bytes)."""
    if isinstance(body, str):
        body = body.encode()
    conn.request(method, path, body=body, headers=headers or {})
    return read_response(conn)


def read_response(conn: http.client.HTTPConnection):
    resp = conn.getresponse()
    raw = resp.read()
    headers = {k.lower(): v for k, v in resp.getheaders()}
    try:
        doc = json.loads(raw) if raw else None
    except ValueError:
        doc = raw
    return resp.status, headers, doc


def closes(daemon) -> list[dict]:
    """What the test application (lp_app) saw closing."""
    with urllib.request.urlopen(daemon.http_url + "/closes", timeout=10) as resp:
        return json.loads(resp.read())


def held_polls(daemon) -> int:
    """How many polls the daemon holds now (from ``/status``)."""
    with urllib.request.urlopen(daemon.http_url + "/status", timeout=10) as resp:
        return json.loads(resp.read())["long_polling"]["held_polls"]


def wait_for(predicate, timeout: float = 10.0, interval: float = 0.05):
    """Poll ``predicate`` until it returns something true; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)


class Session:
    """A long-polling session driven by hand: ``post`` on one connection, ``poll`` on another."""

    def __init__(self, daemon, path: str = "/", body: bytes = b"", headers=None, timeout: float = 10.0):
        self.daemon = daemon
        self.conn = http.client.HTTPConnection(daemon.host, daemon.port, timeout=timeout)
        self.poll_conn = http.client.HTTPConnection(daemon.host, daemon.port, timeout=timeout)
        self.headers = headers or {}
        status, _, doc = request(self.conn, "POST", "/lp/open" + path, body, self.headers)
        assert status == 200, (status, doc)
        self.open_doc = doc
        self.id = doc["session"]
        self.sent = 0
        self.received = 0
        self.messages: list[dict] = []
        self.take(doc)

    def take(self, doc: dict) -> list[dict]:
        """Record the new messages of a poll (or open) response, skipping resends."""
        new = [m for m in doc["messages"] if m["seq"] > self.received]
        for m in new:
            # Consecutive, except a close item after a dropped queue (1008).
            assert m["seq"] == self.received + 1 or "close" in m, (m, self.received)
            self.received = m["seq"]
        self.messages.extend(new)
        return new

    def texts(self) -> list[str]:
        return [m["text"] for m in self.messages if "text" in m]

    def post(self, *items: dict, headers=None):
        body = json.dumps({"messages": list(items)}).encode()
        return request(self.conn, "POST", f"/lp/{self.id}/send", body, {**self.headers, **(headers or {})})

    def send(self, text: str):
        self.sent += 1
        status, _, doc = self.post({"seq": self.sent, "text": text})
        assert status == 200, (status, doc)
        return doc

    def start_poll(self, ack: int | None = None, conn=None) -> http.client.HTTPConnection:
        conn = conn or self.poll_conn
        conn.request(
            "GET", f"/lp/{self.id}/poll?ack={self.received if ack is None else ack}", headers=self.headers
        )
        return conn

    def start_held_poll(self, ack: int | None = None, conn=None) -> http.client.HTTPConnection:
        """Start a poll that has nothing to get and wait until the daemon holds it."""
        before = held_polls(self.daemon)
        conn = self.start_poll(ack, conn)
        wait_for(lambda: held_polls(self.daemon) > before)
        return conn

    def poll(self, ack: int | None = None):
        """One poll; returns (status, doc) and records its messages."""
        status, _, doc = read_response(self.start_poll(ack))
        if status == 200:
            self.take(doc)
        return status, doc

    def poll_until(self, predicate, timeout: float = 10.0):
        deadline = time.monotonic() + timeout
        while not predicate(self):
            assert time.monotonic() < deadline, f"not received within {timeout} s: {self.messages}"
            status, doc = self.poll()
            assert status == 200, (status, doc)

    def close_sockets(self) -> None:
        self.conn.close()
        self.poll_conn.close()


def raw_http(host: str, port: int, data: bytes, timeout: float = 5.0) -> bytes:
    """Send ``data`` on a fresh socket and read until the server closes it."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(data)
        chunks = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks)
