"""Passing a client socket to a sibling ``--processes`` child: SCM_RIGHTS over per-slot socket pairs.

The parent makes :class:`ProcessSlots` before it forks: for each slot a
``SOCK_SEQPACKET`` socket pair (any child sends on slot *k*'s sending end; the
child in slot *k* reads the receiving end, which the parent keeps open, so a
replacement child inherits the same queue) and a small shared-memory record
(``mmap`` of the slot's pid and private status port). One handover is one
record: the descriptor, the bytes the sender already read (by value) and the
answers it had not sent yet. Everything is bounded (:data:`HANDOFF_MAX`); a
slot without a live child, a full queue or too many bytes are refused to the
sender, who answers the client itself.
"""

from __future__ import annotations

import array
import logging
import mmap
import os
import socket
import struct
from collections.abc import Callable
from typing import Any

log = logging.getLogger("wsdaemon.handoff")

#: Most bytes one handover carries (the request read so far plus unsent answers).
HANDOFF_MAX = 128 * 1024
#: Requested send buffer of each slot's queue (the kernel caps it at wmem_max).
QUEUE_BYTES = 1024 * 1024
#: Records one readable event reads at most (the loop stays fair to the other sockets).
RECORDS_PER_EVENT = 64
_HEADER = struct.Struct("!4sII")  # magic, inbound length, outbound length
_MAGIC = b"wsh1"
_RECORD = struct.Struct("qq")  # per slot: pid (0: no live child), private status port


class ProcessSlots:
    """The slots of the ``--processes`` children: the handover queues and the shared records."""

    def __init__(self, count: int) -> None:
        self.count = count
        self._table = mmap.mmap(-1, _RECORD.size * count)  # MAP_SHARED | MAP_ANONYMOUS
        self.receivers: list[socket.socket] = []
        self.senders: list[socket.socket] = []
        for _ in range(count):
            receiver, sender = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            sender.setblocking(False)
            receiver.setblocking(False)
            for sock, option in ((sender, socket.SO_SNDBUF), (receiver, socket.SO_RCVBUF)):
                try:
                    sock.setsockopt(socket.SOL_SOCKET, option, QUEUE_BYTES)
                except OSError:  # pragma: no cover - the default buffer still carries HANDOFF_MAX
                    pass
            self.receivers.append(receiver)
            self.senders.append(sender)

    # -- the shared records ---------------------------------------------------------

    def _get(self, slot: int) -> tuple[int, int]:
        return _RECORD.unpack_from(self._table, slot * _RECORD.size)

    def _set(self, slot: int, pid: int, port: int) -> None:
        _RECORD.pack_into(self._table, slot * _RECORD.size, pid, port)

    def started(self, slot: int, pid: int) -> None:
        """Slot ``slot`` has a live child ``pid`` (its port is not known yet)."""
        self._set(slot, pid, 0)

    def stopped(self, slot: int) -> None:
        """The child of ``slot`` is gone: handovers to it are refused until a replacement starts."""
        self._set(slot, 0, 0)

    def publish_port(self, slot: int, port: int) -> None:
        """The child of ``slot`` serves /status and /metrics on 127.0.0.1:``port``."""
        self._set(slot, os.getpid(), port)

    def pid(self, slot: int) -> int:
        return self._get(slot)[0]

    def port(self, slot: int) -> int:
        return self._get(slot)[1]

    def records(self) -> list[tuple[int, int, int]]:
        """(slot, pid, port) of every slot; pid 0 while a slot has no child."""
        return [(slot, *self._get(slot)) for slot in range(self.count)]

    # -- in a child -----------------------------------------------------------------

    def keep_only(self, slot: int) -> socket.socket:
        """In the child of ``slot``: close the other slots' receiving ends; returns its own."""
        for index, receiver in enumerate(self.receivers):
            if index != slot:
                receiver.close()
        return self.receivers[slot]

    def send(self, slot: int, sock: socket.socket, inbound: bytes, outbound: bytes = b"") -> str | None:
        """Queue ``sock`` (and the bytes) for the child of ``slot``; None once sent, else why not.

        On success the caller still holds its own descriptor and must close it.
        """
        if not 0 <= slot < self.count:
            return f"no process slot {slot}"
        if not self.pid(slot):
            return f"process {slot} is restarting"
        if len(inbound) + len(outbound) > HANDOFF_MAX:
            return f"more than {HANDOFF_MAX} bytes to hand over"
        record = _HEADER.pack(_MAGIC, len(inbound), len(outbound)) + inbound + outbound
        fds = array.array("i", [sock.fileno()])
        try:
            self.senders[slot].sendmsg([record], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds)])
        except (BlockingIOError, InterruptedError):
            return f"process {slot} has too many handovers waiting"
        except OSError as exc:
            return f"handover to process {slot} failed: {exc.strerror or exc}"
        return None

    def close(self) -> None:
        for sock in (*self.receivers, *self.senders):
            sock.close()
        self._table.close()


class HandoffReceiver:
    """The loop's handler of a child's receiving end: each record becomes ``adopt(sock, inbound, outbound)``."""

    __slots__ = ("sock", "adopt")

    def __init__(self, sock: socket.socket, adopt: Callable[[socket.socket, bytes, bytes], None]) -> None:
        self.sock = sock
        self.adopt = adopt

    def on_readable(self) -> None:
        for _ in range(RECORDS_PER_EVENT):
            try:
                data, ancdata, flags, _ = self.sock.recvmsg(
                    _HEADER.size + HANDOFF_MAX, socket.CMSG_SPACE(array.array("i").itemsize)
                )
            except (BlockingIOError, InterruptedError):
                return
            if not data and not ancdata:
                return
            client = _received_socket(ancdata)
            parsed = _parse(data, flags)
            if client is None or parsed is None:
                log.warning("dropped a malformed handover record (%d bytes)", len(data))
                if client is not None:
                    client.close()
                continue
            client.setblocking(False)
            try:
                self.adopt(client, *parsed)
            except Exception:
                log.exception("error adopting a handed-over client")
                client.close()

    def on_writable(self) -> None:  # pragma: no cover - never registered for writing
        pass


def _received_socket(ancdata: list[tuple[int, int, bytes]]) -> socket.socket | None:
    """The one descriptor of a record (any extra is closed)."""
    fds: list[int] = []
    for level, kind, payload in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            received = array.array("i")
            received.frombytes(payload[: len(payload) - len(payload) % received.itemsize])
            fds.extend(received)
    for extra in fds[1:]:
        os.close(extra)
    return socket.socket(fileno=fds[0]) if fds else None


def _parse(data: bytes, flags: int) -> tuple[bytes, bytes] | None:
    if flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC) or len(data) < _HEADER.size:
        return None
    magic, n_in, n_out = _HEADER.unpack_from(data)
    if magic != _MAGIC or _HEADER.size + n_in + n_out != len(data):
        return None
    body = memoryview(data)[_HEADER.size :]
    return bytes(body[:n_in]), bytes(body[n_in:])


def describe_peer(sock: Any) -> Any:
    """The peer address of an adopted socket (``("?", 0)`` when the client is already gone)."""
    try:
        return sock.getpeername()
    except OSError:
        return ("?", 0)
