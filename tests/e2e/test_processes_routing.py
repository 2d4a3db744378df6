"""--processes 2 with real clients: every request of a session reaches the child that owns it.

Long-polling over aiohttp with one TCP connection per request (so the kernel spreads them
over both children), WebSocket resumes with the session client, kill -9 of one child,
TLS, ``wsdaemon status``, the parent's summed /metrics and per-child worker sockets.
Each daemon runs with ``--broker`` on a real redis-server (the ``redis_server`` fixture).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

import aiohttp
import pytest
import websockets
from prometheus_client.parser import text_string_to_metric_families

from tests.daemon.test_processes import wait_children
from tests.e2e.test_tls import Certs
from tests.support.daemon_process import REPO, free_port
from tests.support.session_client import SessionClient

ROUNDS = 20


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return json.loads(resp.read())


def child_docs(port: int) -> list[dict]:
    """Each child's /status, fetched from its private port (as the parent does)."""
    table = get_json(f"http://127.0.0.1:{port}/status")["process"]["processes"]
    return [get_json(f"http://127.0.0.1:{p['status_port']}/status") for p in table if p["status_port"]]


def handoffs(port: int) -> dict[str, int]:
    total = {"sent": 0, "adopted": 0, "refused": 0}
    for doc in child_docs(port):
        for key, n in doc["process"]["handoffs"].items():
            total[key] += n
    return total


def slot_of(session_id: str) -> int:
    return int(session_id.split("~", 1)[0])


@pytest.fixture
def two(daemon_factory, redis_server):
    """Start a --processes 2 daemon with extra options; waits for both children."""

    def start(*args: str, app: str = "wsdaemon.apps.echo:app", tls: bool = False):
        d = daemon_factory("--processes", "2", "--broker", redis_server.url, *args, app=app)
        if tls:  # /status is https: wait for both children's line instead
            deadline = time.monotonic() + 20
            while d.log().count("listening on 127.0.0.1") < 2:
                assert time.monotonic() < deadline, d.log()[-2000:]
                time.sleep(0.1)
        else:
            wait_children(d.port)
        return d

    return start


class LpClient:
    """One long-polling session over aiohttp; every request on a fresh connection."""

    def __init__(self, http: aiohttp.ClientSession, base: str) -> None:
        self.http, self.base = http, base
        self.id = ""
        self.received = self.sent = 0

    async def open(self, query: str = "") -> dict:
        async with self.http.post(f"{self.base}/lp/open/echo{query}", data="") as r:
            doc = await r.json()
            assert r.status == 200, doc
        self.id = doc["session"]
        self.received = max([m["seq"] for m in doc["messages"]], default=self.received)
        return doc

    async def post(self, text: str) -> tuple[int, dict]:
        self.sent += 1
        body = json.dumps({"messages": [{"seq": self.sent, "text": text}]})
        async with self.http.post(f"{self.base}/lp/{self.id}/send", data=body) as r:
            return r.status, await r.json()

    async def poll(self) -> tuple[int, dict]:
        async with self.http.get(f"{self.base}/lp/{self.id}/poll?ack={self.received}") as r:
            doc = await r.json()
        if r.status == 200:
            self.received = max([m["seq"] for m in doc["messages"]], default=self.received)
        return r.status, doc

    async def round(self, text: str) -> None:
        """Post ``text`` and poll until its echo comes back; every answer must be a 200."""
        status, doc = await self.post(text)
        assert status == 200, (self.id, status, doc)
        deadline = time.monotonic() + 10
        while True:
            status, doc = await self.poll()
            assert status == 200, (self.id, status, doc)
            if any(m.get("text") == text for m in doc["messages"]):
                return
            assert time.monotonic() < deadline, (self.id, text)


def http_session() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(force_close=True), timeout=aiohttp.ClientTimeout(total=30)
    )


async def open_on_both(http, base: str, each: int, limit: int = 80) -> list[LpClient]:
    """Sessions until each slot owns ``each`` of them (the accepting child owns what it opens)."""
    by_slot: dict[int, list[LpClient]] = {0: [], 1: []}
    for _ in range(limit):
        client = LpClient(http, base)
        await client.open()
        by_slot[slot_of(client.id)].append(client)
        if all(len(v) >= each for v in by_slot.values()):
            return by_slot[0][:each] + by_slot[1][:each]
    raise AssertionError(f"sessions did not land on both children: {by_slot}")


def test_long_polling_sessions_are_served_by_their_child(two):
    d = two()
    base = d.http_url

    async def scenario():
        async with http_session() as http:
            clients = await open_on_both(http, base, 4)

            async def use(i: int, client: LpClient) -> None:
                for n in range(ROUNDS):
                    await client.round(f"s{i}-m{n}")

            await asyncio.gather(*(use(i, c) for i, c in enumerate(clients)))

    asyncio.run(scenario())
    moved = handoffs(d.port)
    assert moved["sent"] > 0 and moved["sent"] == moved["adopted"] and moved["refused"] == 0, moved
    per_child = [doc["process"]["handoffs"]["adopted"] for doc in child_docs(d.port)]
    assert len(per_child) == 2
    assert "Traceback" not in d.log()


def test_resumes_reach_the_owning_child_over_websocket_and_long_polling(two):
    d = two(app="tests.support.session_app:app")
    url = f"ws://127.0.0.1:{d.port}/echo"
    client = SessionClient(url)
    owner = slot_of(client.session_id)
    for n in range(12):
        client.send(f"m{n}")
        while client.recv()[1] != f"m{n}":  # the welcome, replays
            pass
        client.ack()
        client.drop()
        client = SessionClient(url, resume_from=client)
        assert client.hello["resumed"] is True, client.hello
        assert slot_of(client.session_id) == owner
    client.close()

    async def lp_resume():
        async with http_session() as http:
            lp = LpClient(http, d.http_url)
            doc = await lp.open("?wsdaemon_session=new")
            sid, token = doc["session"], doc["token"]
            for _ in range(10):
                again = await lp.open(f"?wsdaemon_session={sid}.{token}.{lp.received}")
                assert again["session"] == sid

    asyncio.run(lp_resume())
    assert handoffs(d.port)["sent"] > 0


def test_kill_9_of_one_child_leaves_the_other_childs_sessions_alone(two):
    d = two()
    base = d.http_url

    async def scenario():
        async with http_session() as http:
            clients = await open_on_both(http, base, 3)
            victims = [c for c in clients if slot_of(c.id) == 0]
            survivors = [c for c in clients if slot_of(c.id) == 1]
            for c in clients:
                await c.round("before")
            pids = wait_children(d.port)
            os.kill(pids[0], signal.SIGKILL)

            async def keep_using(c: LpClient) -> None:
                for n in range(ROUNDS):
                    await c.round(f"after-{n}")

            survivors_done = asyncio.gather(*(keep_using(c) for c in survivors))
            await asyncio.to_thread(wait_children, d.port, 2, 20.0, pids[0])
            for c in victims:  # a replaced child does not know its predecessor's sessions
                deadline = time.monotonic() + 10
                while True:
                    status, doc = await c.poll()
                    if status == 404:
                        break
                    assert status in (200, 503), (status, doc)  # 503: the slot was restarting
                    assert time.monotonic() < deadline
                    await asyncio.sleep(0.1)
                fresh = LpClient(http, base)  # the client reconnects: a new session, somewhere
                await fresh.open()
                await fresh.round("reconnected")
            await survivors_done

    asyncio.run(scenario())
    log = d.log()
    assert "died (SIGKILL)" in log and "Traceback" not in log


def test_long_polling_over_tls_is_refused_and_wss_works(two, tmp_path):
    certs = Certs(tmp_path)
    d = two("--certfile", str(certs.server_pem), tls=True)
    ctx = certs.client_context()
    request = urllib.request.Request(f"https://127.0.0.1:{d.port}/lp/open/echo", data=b"", method="POST")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=5, context=ctx)
    assert refused.value.code == 421
    assert "long-polling over TLS is not served with --processes" in json.loads(refused.value.read())["error"]

    async def wss():
        async with websockets.connect(f"wss://127.0.0.1:{d.port}/", ssl=ctx) as ws:
            await ws.send("over tls")
            assert await asyncio.wait_for(ws.recv(), 5) == "over tls"

    for _ in range(4):  # whichever child accepts
        asyncio.run(wss())


def test_status_lists_the_children_and_metrics_are_their_sum(two, tmp_path):
    metrics_port = free_port()
    pidfile = tmp_path / "wsd.pid"
    d = two("--metrics-listen", f"127.0.0.1:{metrics_port}", "--pidfile", str(pidfile))
    pids = wait_children(d.port)

    async def hold_connections():
        sockets = [await websockets.connect(f"ws://127.0.0.1:{d.port}/") for _ in range(10)]
        try:
            await asyncio.to_thread(check)
        finally:
            for ws in sockets:
                await ws.close()

    def check():
        out = subprocess.run(
            [sys.executable, "-m", "wsdaemon", "status", "--port", str(d.port), "--pidfile", str(pidfile)],
            capture_output=True, text=True, timeout=30, cwd=str(REPO),
        )  # fmt: skip
        assert out.returncode == 0, out
        lines = out.stdout.strip().splitlines()
        assert lines[0].startswith(f"wsdaemon is running: pid {d.proc.pid} (2 processes)"), lines
        assert "10 connections in all (rfc6455 10)" in lines[0], lines
        assert len(lines) == 3 and all(f"pid {pid}," in out.stdout for pid in pids.values())
        parent = get_json(f"http://127.0.0.1:{metrics_port}/status")
        assert parent["pid"] == d.proc.pid and parent["connections"] == 10
        assert sorted(c["pid"] for c in parent["children"]) == sorted(pids.values())
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as resp:
            summed = samples(resp.read().decode())
        per_child = [samples(metrics_of(doc)) for doc in child_docs(d.port)]
        key = ("wsdaemon_connections", (("transport", "rfc6455"),))
        assert summed[key] == 10 == sum(c.get(key, 0) for c in per_child)
        assert summed[("wsdaemon_processes", ())] == 2 == summed[("wsdaemon_processes_scraped", ())]
        assert ("wsdaemon_handoffs_total", (("outcome", "sent"),)) in summed
        bucket = ("wsdaemon_loop_lag_seconds_bucket", (("le", "+Inf"),))
        assert summed[bucket] >= max(c[bucket] for c in per_child)

    asyncio.run(hold_connections())


def samples(text: str) -> dict:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def metrics_of(doc: dict) -> str:
    port = next(p["status_port"] for p in doc["process"]["processes"] if p["pid"] == doc["pid"])
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        return resp.read().decode()


def test_each_child_has_its_own_worker_socket(two, tmp_path):
    path = tmp_path / "workers.sock"
    d = two("--workers", "1", "--worker-socket", str(path), app="tests.support.taskapp:app")
    deadline = time.monotonic() + 20
    while not all((tmp_path / f"workers.sock.{slot}").exists() for slot in (0, 1)):
        assert time.monotonic() < deadline, os.listdir(tmp_path)
        time.sleep(0.1)
    assert not path.exists()

    async def ask() -> int:
        async with websockets.connect(f"ws://127.0.0.1:{d.port}/") as ws:
            await ws.send(json.dumps({"id": 1, "task": "add", "args": [2, 3]}))
            answer = json.loads(await asyncio.wait_for(ws.recv(), 15))
            assert answer == {"id": 1, "result": 5}, answer
            return 1

    async def many():
        return await asyncio.gather(*(ask() for _ in range(12)))

    assert sum(asyncio.run(many())) == 12
    deadline = time.monotonic() + 20
    while True:  # each child's own worker connected to its own socket
        served = [doc["workers"]["workers"] for doc in child_docs(d.port)]
        if len(served) == 2 and all(w and w[0]["state"] == "ready" for w in served):
            break
        assert time.monotonic() < deadline, served
        time.sleep(0.2)
    assert "cannot listen for workers" not in d.log()
