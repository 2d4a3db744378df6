"""With ``--processes N``: a request naming another child's session goes to that child.

Each child's session ids begin with its slot (``1~...``). Any child accepts
from the shared listening socket; when a request head names a session of
another slot (a long-polling poll or post, a long-polling open or a WebSocket
upgrade with ``?wsdaemon_session=ID.TOKEN.ACK``), the :class:`HttpConnection`
is handed over to that slot's child (:mod:`wsdaemon.net.handoff`: the socket by
SCM_RIGHTS, the request's bytes by value) and forgotten here; the child there
adopts it as a new HTTP connection fed with those bytes, which serves the
request as if it had accepted it. A TLS connection cannot move (its TLS state
lives in this process): long-polling over TLS is refused with 421 when
``--processes`` is above 1, and a WebSocket resume over TLS is served here
(not recovered unless it landed on its own child). See docs/scaling.md.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from ..net.handoff import HandoffReceiver, ProcessSlots, describe_peer
from ..net.loop import EVENT_READ
from ..proto.errors import HandshakeError
from ..proto.http11 import Request
from ..proto.session import NEW, SESSION_PARAM
from .http import HttpConnection
from .longpoll_transport import OPEN_PATH, PREFIX

log = logging.getLogger("wsdaemon.handoff")

#: Between a session id's slot and its random part (never produced by ``token_urlsafe``).
SLOT_SEP = "~"
TLS_REFUSAL = (
    "long-polling over TLS is not served with --processes above 1 (a TLS connection cannot move "
    "to the process that owns its session): terminate TLS in front of wsdaemon or run one process"
)


def session_slot(session_id: str) -> int | None:
    """The slot a session id names (``3~abc`` -> 3), None for an id without one."""
    slot, sep, _ = session_id.partition(SLOT_SEP)
    if not sep or not slot.isdigit() or len(slot) > 4:
        return None
    return int(slot)


def request_slot(request: Request) -> int | None:
    """The slot of the session a request names: in a long-polling path or a resume parameter."""
    path = request.path
    if path.startswith(PREFIX):
        first = path[len(PREFIX) :].partition("/")[0]
        if first != OPEN_PATH:
            return session_slot(first)
    if SESSION_PARAM in request.query_string:
        value = request.query.get(SESSION_PARAM)
        if value and value != NEW:
            return session_slot(value.partition(".")[0])
    return None


class Handoff:
    """The child of ``slot``: hands requests of other slots' sessions over, adopts the ones handed here.

    A component of the server (started and closed with it); ``server`` is the
    composition root (its router, sessions, admission, loop and long-polling).
    """

    def __init__(self, server: Any, slots: ProcessSlots, slot: int) -> None:
        self.server = server
        self.slots = slots
        self.slot = slot
        #: Requests handed over to another child, adopted from one, and refused (503).
        self.sent = self.adopted = self.refused = 0
        self._receiver: HandoffReceiver | None = None
        server.sessions.id_prefix = f"{slot}{SLOT_SEP}"
        server.router.claim = self.claim

    def start(self) -> None:
        sock = self.slots.keep_only(self.slot)
        self._receiver = HandoffReceiver(sock, self.adopt)
        self.server.loop.register(sock, EVENT_READ, self._receiver)
        port = getattr(self.server.metrics, "port", None) or 0
        self.slots.publish_port(self.slot, port)

    def close(self) -> None:
        if self._receiver is not None:
            self.server.loop.unregister(self._receiver.sock)
            self._receiver = None

    # -- sending ------------------------------------------------------------------------

    def claim(self, conn: HttpConnection, request: Request) -> bool:
        """Called by the router for every request head: True when this child does not serve it."""
        longpoll = request.path.startswith(PREFIX)
        if longpoll and conn.secure:
            self._refuse(conn, request, HandshakeError(TLS_REFUSAL, 421))
            return True
        slot = request_slot(request)
        if slot is None or slot == self.slot or slot >= self.slots.count or conn.secure:
            return False  # ours, unknown (answered here: 404 / not recovered) or TLS (served here)
        inbound, outbound = conn.handover_bytes()
        why = self.slots.send(slot, conn.sock, inbound, outbound)
        if why is None:
            conn.release_socket()
            self.sent += 1
            return True
        self.refused += 1
        log.warning("%s: %s %s not handed over: %s", conn, request.method, request.path[:64], why)
        self._refuse(conn, request, HandshakeError(why, 503, [("Retry-After", "1")]))
        return True

    def _refuse(self, conn: HttpConnection, request: Request, exc: HandshakeError) -> None:
        """Answer here, closing the connection after (a post's body is left unread)."""
        lp = self.server.longpoll
        if lp is not None and request.path.startswith(PREFIX):
            lp.error(conn, request, exc, lp.cors_headers(request) or [], keep_alive=False)
        else:
            conn.respond_error(exc.status, exc.reason, exc.headers)

    # -- receiving ----------------------------------------------------------------------

    def adopt(self, sock: Any, inbound: bytes, outbound: bytes) -> None:
        """A client handed here by a sibling: a fresh HTTP connection fed with what it had read."""
        server = self.server
        if server.stopping:
            sock.close()
            return
        address = describe_peer(sock)
        if not server.admission.admit(sock, address, rated=False):  # its rate was the sibling's to check
            return  # refused over max_connections (a 503 of its own)
        conn = HttpConnection(server, sock, address)
        server.loop.register(sock, EVENT_READ, conn)
        self.adopted += 1
        if outbound:
            conn.write(outbound)
        conn.feed(inbound)

    def status(self) -> dict[str, Any]:
        """This child's slot and handovers, and every slot's pid and private status port."""
        return {
            "slot": self.slot,
            "parent": os.getppid(),
            "handoffs": {"sent": self.sent, "adopted": self.adopted, "refused": self.refused},
            "processes": [
                {"slot": slot, "pid": pid, "status_port": port} for slot, pid, port in self.slots.records()
            ],
        }
