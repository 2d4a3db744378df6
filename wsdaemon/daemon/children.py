"""The ``--processes`` children seen from outside them: their /status and /metrics, summed.

Each child serves /status and /metrics on a private loopback port of its own
(its ``metrics_listen`` is ``127.0.0.1:0``) and writes that port into the
shared slot records (:class:`~wsdaemon.net.handoff.ProcessSlots`). The parent
(with ``--metrics-listen``) and ``wsdaemon status`` fetch every child's
document over plain blocking HTTP with a short timeout and sum them: samples
of equal name and labels are added (histograms bucket by bucket), so a scrape
of the parent reads like a scrape of one daemon. Nothing here runs in a
child's loop.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import select
import socket
import time
from collections.abc import Iterable, Iterator
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

log = logging.getLogger("wsdaemon.arbiter")

#: Seconds a child has to answer one fetch of the parent or of ``wsdaemon status``.
FETCH_TIMEOUT = 2.0
#: Per-process facts that do not add up: the oldest start, the lowest descriptor limit.
_LOWEST = {"process_start_time_seconds", "process_max_fds"}
_MAX_REQUEST_HEAD = 16 * 1024


def fetch(port: int, path: str, timeout: float = FETCH_TIMEOUT) -> bytes:
    """``GET path`` from a child's private port on 127.0.0.1 (raises OSError or ValueError)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        body = resp.read(16 * 1024 * 1024)
        if resp.status != 200:
            raise ValueError(f"{path} answered {resp.status} {resp.reason}")
        return body
    finally:
        conn.close()


def fetch_all(ports: Iterable[tuple[int, int]], path: str) -> list[tuple[int, bytes | None]]:
    """``path`` of each ``(pid, port)``; None for a child that did not answer in time."""
    answers: list[tuple[int, bytes | None]] = []
    for pid, port in ports:
        try:
            answers.append((pid, fetch(port, path)))
        except (OSError, ValueError) as exc:
            log.warning("child pid %d did not answer %s on port %d: %s", pid, path, port, exc)
            answers.append((pid, None))
    return answers


# -- /metrics -------------------------------------------------------------------------


def sum_metrics(texts: Iterable[str]) -> list[Metric]:
    """The families of several expositions with samples of equal name and labels added up."""
    families: dict[str, Metric] = {}
    values: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]] = {}
    for text in texts:
        for family in text_string_to_metric_families(text):
            if family.name not in families:
                families[family.name] = Metric(family.name, family.documentation, family.type, family.unit)
                values[family.name] = {}
            summed = values[family.name]
            for sample in family.samples:
                key = (sample.name, tuple(sorted(sample.labels.items())))
                if key not in summed:
                    summed[key] = sample.value
                elif sample.name in _LOWEST:
                    summed[key] = min(summed[key], sample.value)
                else:
                    summed[key] += sample.value
    for name, family in families.items():
        for (sample_name, labels), value in values[name].items():
            family.add_sample(sample_name, dict(labels), value)
    return list(families.values())


class _Families:
    """A collector that yields ready families (what ``generate_latest`` wants)."""

    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterator[Metric]:
        return iter(self.families)


def children_metrics(ports: list[tuple[int, int]]) -> bytes:
    """The text format of every child's /metrics summed, plus how many children answered."""
    answers = fetch_all(ports, "/metrics")
    texts = [body.decode("utf-8", "replace") for _, body in answers if body is not None]
    families = sum_metrics(texts)
    answered = Metric("wsdaemon_processes_scraped", "Children whose /metrics this scrape summed.", "gauge")
    answered.add_sample("wsdaemon_processes_scraped", {}, len(texts))
    expected = Metric("wsdaemon_processes", "Serving children (--processes).", "gauge")
    expected.add_sample("wsdaemon_processes", {}, len(ports))
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families([expected, answered, *families]))
    return generate_latest(registry)


# -- /status --------------------------------------------------------------------------


def children_status(ports: list[tuple[int, int]]) -> dict[str, Any]:
    """Every child's /status and the sums: connections, per protocol, long-polling sessions."""
    children: list[dict[str, Any]] = []
    by_protocol: dict[str, int] = {}
    connections = 0
    for pid, body in fetch_all(ports, "/status"):
        if body is None:
            children.append({"pid": pid, "error": "no answer"})
            continue
        doc = json.loads(body)
        children.append(doc)
        connections += doc.get("connections", 0)
        for name, n in doc.get("by_protocol", {}).items():
            by_protocol[name] = by_protocol.get(name, 0) + n
    return {"connections": connections, "by_protocol": by_protocol, "children": children}


def live_ports(records: Iterable[tuple[int, int, int]]) -> list[tuple[int, int]]:
    """``(pid, port)`` of the slots whose child is up and has published its port."""
    return [(pid, port) for _slot, pid, port in records if pid and port]


# -- the parent's listener ------------------------------------------------------------


class ParentEndpoint:
    """``--metrics-listen`` served by the parent: /metrics and /status summed over the children.

    One request at a time, answered in the arbiter's own loop (blocking, bounded
    by :data:`FETCH_TIMEOUT` per read and per child).
    """

    def __init__(self, sock: socket.socket, slots: Any, port: int) -> None:
        self.sock = sock
        self.slots = slots
        self.public_port = port
        self.started_at = time.monotonic()
        sock.setblocking(False)

    def on_readable(self) -> None:
        try:
            client, _ = self.sock.accept()
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            log.warning("metrics listener: accept failed: %s", exc)
            return
        with client:
            client.settimeout(FETCH_TIMEOUT)
            try:
                path = _read_request_path(client)
                status, ctype, body = self.answer(path)
                head = (
                    f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
                    "Cache-Control: no-cache\r\nConnection: close\r\n\r\n"
                )
                client.sendall(head.encode() + body)
            except (OSError, ValueError) as exc:
                log.info("metrics listener: request not answered: %s", exc)

    def answer(self, path: str | None) -> tuple[str, str, bytes]:
        ports = live_ports(self.slots.records())
        if path == "/metrics":
            return "200 OK", CONTENT_TYPE_LATEST, children_metrics(ports)
        if path == "/status":
            doc = {
                "pid": os.getpid(),
                "port": self.public_port,
                "uptime": round(time.monotonic() - self.started_at, 3),
                "processes": self.slots.count,
                **children_status(ports),
            }
            return "200 OK", "application/json", json.dumps(doc).encode()
        return "404 Not Found", "text/plain", b"not found\n"

    def close(self) -> None:
        self.sock.close()


def _read_request_path(client: socket.socket) -> str | None:
    """The path of a GET request head (None for another method); bounded, with the socket's timeout."""
    data = b""
    while b"\r\n\r\n" not in data:
        if len(data) > _MAX_REQUEST_HEAD:
            raise ValueError("request head too large")
        ready, _, _ = select.select([client], [], [], FETCH_TIMEOUT)
        if not ready:
            raise ValueError("request head not complete in time")
        chunk = client.recv(4096)
        if not chunk:
            raise ValueError("client went away")
        data += chunk
    method, _, rest = data.partition(b" ")
    if method != b"GET":
        return None
    target = rest.partition(b" ")[0].decode("latin-1")
    return target.partition("?")[0]
