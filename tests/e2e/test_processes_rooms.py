"""--processes 2 --broker: one room whose members are spread over both children and both transports.

WebSocket members (the ``websockets`` client) and long-polling members (aiohttp, a new TCP
connection per request, so the kernel spreads them) on each child join one room; a publication
from either child and either transport reaches every member exactly once, and presence lists
them all. Then kill -9 of one child: it is replaced, its members reconnect and rejoin, the other
child's members see nothing of it, and the room works again for everyone.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time

import aiohttp
import websockets

from tests.daemon.test_processes import wait_children
from tests.e2e.test_processes_routing import LpClient, http_session, slot_of

APP = "tests.support.rooms_app:app"
EACH = 2  # members per child and per transport


class Member:
    """What one member received, in order, and a way to ask it something."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.got: list[str] = []
        self.task: asyncio.Task | None = None
        self.ended = False  # the server side went away (a close, or an unknown session)

    async def ask(self, text: str, prefix: str, timeout: float = 10.0) -> str:
        start = len(self.got)
        await self.send(text)
        deadline = time.monotonic() + timeout
        while True:
            for item in self.got[start:]:
                if item.startswith(prefix):
                    return item
            assert time.monotonic() < deadline, (self.name, text, self.got[start:])
            await asyncio.sleep(0.02)

    def count(self, text: str) -> int:
        return self.got.count(text)


class WsMember(Member):
    def __init__(self, name: str, ws) -> None:
        super().__init__(name)
        self.ws = ws
        self.close_code: int | None = None
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            async for message in self.ws:
                self.got.append(message)
        except websockets.ConnectionClosed:
            pass
        self.close_code = self.ws.close_code
        self.ended = True

    async def send(self, text: str) -> None:
        await self.ws.send(text)


class LpMember(Member):
    def __init__(self, name: str, client: LpClient) -> None:
        super().__init__(name)
        self.client = client
        self.task = asyncio.create_task(self._poll())

    async def _poll(self) -> None:
        while True:
            try:
                status, doc = await self.client.poll()
            except aiohttp.ClientConnectionError:  # the child holding this poll was killed
                await asyncio.sleep(0.1)
                continue
            if status == 200:
                self.got.extend(m["text"] for m in doc["messages"] if "text" in m)
            elif status == 404:  # its child died: the session is unknown to the replacement
                self.ended = True
                return
            else:
                assert status == 503, (status, doc)  # the owning slot was restarting
                await asyncio.sleep(0.1)

    async def send(self, text: str) -> None:
        status, doc = await self.client.post(text)
        assert status == 200, (self.name, status, doc)


async def ws_member(daemon, name: str) -> tuple[WsMember, int]:
    ws = await websockets.connect(f"{daemon.url}?name={name}", open_timeout=10)
    member = WsMember(name, ws)
    pid = int((await member.ask("pid", "pid ")).split()[1])
    return member, pid


async def ws_members_on_both(daemon, pids: dict[int, int], prefix: str, limit: int = 60) -> list:
    """Connect until each child holds EACH members (the kernel picks the child of each accept)."""
    by_pid: dict[int, list[WsMember]] = {pid: [] for pid in pids.values()}
    for n in range(limit):
        member, pid = await ws_member(daemon, f"{prefix}{n}")
        if len(by_pid[pid]) < EACH:
            by_pid[pid].append(member)
        else:
            await member.ws.close()
            await member.task
        if all(len(v) == EACH for v in by_pid.values()):
            return [m for slot in sorted(pids) for m in by_pid[pids[slot]]]
    raise AssertionError(f"WebSocket connections did not land on both children: {by_pid}")


async def lp_members_on_both(http, daemon, prefix: str, limit: int = 60) -> list[LpMember]:
    by_slot: dict[int, list[LpMember]] = {0: [], 1: []}
    for n in range(limit):
        client = LpClient(http, daemon.http_url)
        await client.open(f"?name={prefix}{n}")
        slot = slot_of(client.id)
        if len(by_slot[slot]) < EACH:
            by_slot[slot].append(LpMember(f"{prefix}{n}", client))
        if all(len(v) == EACH for v in by_slot.values()):
            return by_slot[0] + by_slot[1]
    raise AssertionError(f"long-polling sessions did not land on both children: {by_slot}")


async def join(members: list[Member]) -> None:
    for m in members:
        assert await m.ask("join r", "rooms ") == 'rooms ["r"]'


async def presence(member: Member) -> list[str]:
    return json.loads((await member.ask("presence_full r", "presence_full ")).partition(" ")[2])["users"]


async def wait_presence(member: Member, names: list[str], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while (seen := await presence(member)) != sorted(names):
        assert time.monotonic() < deadline, (seen, sorted(names))
        await asyncio.sleep(0.1)


async def wait_everyone_got(members: list[Member], text: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not all(m.count(text) for m in members):
        missing = [m.name for m in members if not m.count(text)]
        assert time.monotonic() < deadline, (text, missing)
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.5)  # time for a duplicate to arrive, if one were coming
    assert {m.name: m.count(text) for m in members} == {m.name: 1 for m in members}


def test_one_room_over_both_children_and_transports_survives_kill_9_of_a_child(daemon_factory, redis_server):
    d = daemon_factory(
        "--processes", "2", "--broker", redis_server.url, "--broker-presence-ttl", "1.5", app=APP
    )
    pids = wait_children(d.port)

    async def scenario() -> None:
        async with http_session() as http:
            ws = await ws_members_on_both(d, pids, "ws")
            lp = await lp_members_on_both(http, d, "lp")
            await join(ws + lp)
            everyone = ws + lp
            names = [m.name for m in everyone]
            await wait_presence(ws[0], names)  # asked on child 0
            await wait_presence(ws[-1], names)  # and on child 1

            await ws[0].ask("publish_all r from-ws-child0", "published ")
            await lp[-1].ask("publish_all r from-lp-child1", "published ")
            await wait_everyone_got(everyone, "from-ws-child0")
            await wait_everyone_got(everyone, "from-lp-child1")

            victims = ws[:EACH] + lp[:EACH]  # child 0's members: ws by pid, lp by session slot
            survivors = ws[EACH:] + lp[EACH:]
            seen = {m.name: len(m.got) for m in survivors}
            os.kill(pids[0], signal.SIGKILL)
            deadline = time.monotonic() + 15
            while not all(m.ended for m in victims):
                assert time.monotonic() < deadline, [m.name for m in victims if not m.ended]
                await asyncio.sleep(0.05)
            assert {m.close_code for m in victims if isinstance(m, WsMember)} == {1006}
            await asyncio.to_thread(wait_children, d.port, 2, 20.0, pids[0])

            # The victims reconnect (on whichever child accepts them) and rejoin.
            back: list[Member] = []
            for m in victims:
                if isinstance(m, WsMember):
                    back.append((await ws_member(d, m.name))[0])
                else:
                    client = LpClient(http, d.http_url)
                    await client.open(f"?name={m.name}")
                    back.append(LpMember(m.name, client))
            await join(back)
            everyone = survivors + back
            # The dead child's entries leave presence within the TTL; the rejoined ones come in.
            await wait_presence(survivors[0], names)

            for m in survivors:  # nothing but the answers to their own presence questions
                assert all(x.startswith("presence_full ") for x in m.got[seen[m.name] :]), (m.name, m.got)
            assert not any(m.ended for m in survivors)
            await survivors[0].ask("publish_all r after-kill", "published ")
            await back[-1].ask("publish_all r from-a-reconnected-member", "published ")
            await wait_everyone_got(everyone, "after-kill")
            await wait_everyone_got(everyone, "from-a-reconnected-member")

            for m in everyone + victims:
                if isinstance(m, WsMember):
                    await m.ws.close()
                m.task.cancel()
            await asyncio.gather(*(m.task for m in everyone + victims), return_exceptions=True)

    asyncio.run(scenario())
    log = d.log()
    assert "died (SIGKILL)" in log and "Traceback" not in log
