"""Rooms and presence across every transport, against the real daemon with real clients.

Members on RFC 6455 (websockets and websocket-client), hixie-76, hixie-75 and
long-polling (plain HTTP) join one room; a publish reaches every member but the
sender, once, whatever its transport; presence lists their users; on_join and
on_leave run; a connection that closes leaves its rooms and an empty room
disappears. (The JS client over long-polling in Chromium: test_rooms_browser.py.)
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request

import websocket
import websockets

from tests.support.hixie_client import HixieClient
from tests.support.lp_helpers import Session, wait_for

APP = "tests.support.rooms_app:app"


def state(d) -> dict:
    with urllib.request.urlopen(d.http_url + "/state", timeout=10) as resp:
        return json.loads(resp.read())


class Members:
    """One member per client kind, each with blocking ``send`` and ``recv``."""

    def __init__(self, d) -> None:
        self.loop = asyncio.new_event_loop()
        self.aws = self.loop.run_until_complete(websockets.connect(d.url + "?name=ws-async"))
        self.wsc = websocket.create_connection(d.url + "?name=ws-client", timeout=10)
        self.h76 = HixieClient(d.host, d.port, draft=76, path="/?name=hixie76")
        self.h76.handshake()
        self.h75 = HixieClient(d.host, d.port, draft=75, path="/?name=hixie75")
        self.h75.handshake()
        self.lp = Session(d, path="/?name=longpoll")
        self.lp_read = 0
        self.names = ["ws-async", "ws-client", "hixie76", "hixie75", "longpoll"]

    def send(self, name: str, text: str) -> None:
        if name == "ws-async":
            self.loop.run_until_complete(self.aws.send(text))
        elif name == "ws-client":
            self.wsc.send(text)
        elif name == "hixie76":
            self.h76.send_text(text)
        elif name == "hixie75":
            self.h75.send_text(text)
        else:
            self.lp.send(text)

    def recv(self, name: str) -> str:
        if name == "ws-async":
            return self.loop.run_until_complete(asyncio.wait_for(self.aws.recv(), 10))
        if name == "ws-client":
            return self.wsc.recv()
        if name == "hixie76":
            return self.h76.recv(timeout=10)
        if name == "hixie75":
            return self.h75.recv(timeout=10)
        while len(self.lp.texts()) <= self.lp_read:
            status, doc = self.lp.poll()
            assert status == 200, (status, doc)
        self.lp_read += 1
        return self.lp.texts()[self.lp_read - 1]

    def ask(self, name: str, text: str) -> str:
        self.send(name, text)
        return self.recv(name)

    def close(self, name: str) -> None:
        if name == "ws-async":
            self.loop.run_until_complete(self.aws.close())
        elif name == "ws-client":
            self.wsc.close()
        elif name == "hixie76":
            self.h76.close_handshake()
            self.h76.close()
        elif name == "hixie75":
            self.h75.close()
        else:
            self.lp.post({"seq": self.lp.sent + 1, "close": 1000, "reason": "bye"})
            self.lp.close_sockets()

    def close_all(self) -> None:
        for name in self.names:
            try:
                self.close(name)
            except Exception:
                pass
        self.loop.close()


def test_rooms_and_presence_across_transports(daemon_factory):
    d = daemon_factory(app=APP)
    m = Members(d)
    try:
        for name in m.names:
            assert m.ask(name, "join lobby") == 'rooms ["lobby"]'
        assert m.ask("ws-client", "join side") == 'rooms ["lobby", "side"]'
        assert m.ask("ws-client", "rooms") == 'rooms ["lobby", "side"]'

        expected = sorted(m.names)
        for name in m.names:
            assert m.ask(name, "presence lobby") == "presence " + json.dumps(expected)
        doc = state(d)
        assert doc["rooms"] == ["lobby", "side"]
        assert doc["sizes"] == {"lobby": 5, "side": 1}
        assert [e for e in doc["events"] if e[0] == "join"] == [
            *[["join", name, "lobby"] for name in m.names],
            ["join", "ws-client", "side"],
        ]

        # Every member publishes once; each other member gets it exactly once, in order.
        for sender in m.names:
            assert m.ask(sender, f"publish lobby from {sender}") == "published 4"
            for other in m.names:
                if other != sender:
                    assert m.recv(other) == f"from {sender}"
        # server.room(name).publish and publish with the sender included.
        assert m.ask("hixie76", "publish_room side via room") == "published 1"
        assert m.recv("ws-client") == "via room"
        assert m.ask("longpoll", "publish_all lobby to all") == "to all"  # the sender is a member
        assert m.recv("longpoll") == "published 5"
        for name in m.names:
            if name != "longpoll":
                assert m.recv(name) == "to all"

        # Leaving: explicitly, and by closing; an empty room disappears.
        assert m.ask("ws-client", "leave side") == 'rooms ["lobby"]'
        assert "side" not in state(d)["rooms"]
        assert m.ask("hixie75", "leave_all") == "rooms []"
        m.close("ws-async")
        m.close("hixie76")
        m.close("longpoll")
        wait_for(lambda: state(d)["sizes"].get("lobby") == 1)
        assert m.ask("ws-client", "presence lobby") == 'presence ["ws-client"]'
        assert m.ask("ws-client", "publish lobby nobody") == "published 0"
        leaves = [e for e in state(d)["events"] if e[0] == "leave"]
        assert sorted(map(tuple, leaves)) == sorted(
            [
                ("leave", "ws-client", "side"),
                ("leave", "hixie75", "lobby"),
                ("leave", "ws-async", "lobby"),
                ("leave", "hixie76", "lobby"),
                ("leave", "longpoll", "lobby"),
            ]
        )
        m.close("ws-client")
        wait_for(lambda: state(d)["rooms"] == [])
        assert state(d)["status"]["rooms"] == 0
    finally:
        m.close_all()


def test_a_dropped_connection_leaves_its_rooms(daemon_factory):
    d = daemon_factory(app=APP)
    a = websocket.create_connection(d.url + "?name=a", timeout=10)
    b = websocket.create_connection(d.url + "?name=b", timeout=10)
    for ws in (a, b):
        ws.send("join arena")
        assert ws.recv() == 'rooms ["arena"]'
    a.sock.close()  # no close frame: TCP goes away
    wait_for(lambda: state(d)["presence"] == {"arena": ["b"]})
    b.send("publish arena hello")
    assert b.recv() == "published 0"
    b.close()
    wait_for(lambda: state(d)["rooms"] == [])
    time.sleep(0.1)
    assert state(d)["events"][-1] == ["leave", "b", "arena"]
