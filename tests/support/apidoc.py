"""Writes docs/api.md from the docstrings: ``python -m tests.support.apidoc > docs/api.md``.

tests/test_api_doc.py fails when docs/api.md differs from what this prints, so
the reference cannot drift from the code, and when a public name has no docstring.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import sys

import wsdaemon
from wsdaemon.proto.http11 import QueryParams, Request
from wsdaemon.server import Server
from wsdaemon.tasks import TaskFuture
from wsdaemon.transports.appconnection import AppConnection

#: What applications use of the server (the rest of Server is the daemon's own wiring).
SERVER_API = (
    "broadcast",
    "publish",
    "room",
    "rooms",
    "presence",
    "fetch_presence",
    "call_later",
    "call_every",
    "connections",
)
#: What applications use of a connection, whatever its transport.
CONNECTION_API = (
    "send",
    "close",
    "open",
    "closed",
    "server",
    "remote_address",
    "request",
    "protocol",
    "subprotocol",
    "compression",
    "user",
    "data",
    "join",
    "leave",
    "leave_all",
    "rooms",
    "backlogged",
    "buffered_amount",
    "close_code",
    "close_reason",
)
#: Slot attributes have no docstring of their own: what each one is.
ATTRIBUTES = {
    "request": "The handshake request: `path`, `query`, `headers`, `cookies`, `remote_address`.",
    "protocol": 'The transport: `"rfc6455"`, `"hixie-76"`, `"hixie-75"` or `"long-polling"`.',
    "subprotocol": "The subprotocol chosen from the client's offer, or `None`.",
    "data": "Free for the application's own per-connection state (`None` at first).",
    "compression": "The permessage-deflate parameters agreed at the handshake (a `DeflateParams`), or `None`.",
    "user": "What the application's `on_connect` returned for this client (`None` without one).",
    "close_code": "The close code once the connection is closing or closed, else `None`.",
    "close_reason": 'The close reason (`""` when none was given).',
    "buffered_amount": "Bytes accepted by `send` and not yet taken by the network (or, long-polling, not yet acknowledged).",
    "name": "The task's name, as declared with `@app.task`.",
    "connections": "The open connections of every transport (a set; do not modify it).",
}
#: Called by the server, not by applications.
INTERNAL = {
    "handle_connect",
    "handle_join",
    "handle_leave",
    "handle_open",
    "handle_close",
    "handle_resume",
    "started",
    "stopped",
    "set_result",
    "set_exception",
}

INTRO = """# API reference

Generated from the docstrings by `python -m tests.support.apidoc > docs/api.md`;
`tests/test_api_doc.py` fails when this page and the code disagree. Import
everything listed under "Package" from `wsdaemon` itself.

Per-connection state of your own goes in `conn.data` (free for the application,
`None` at first). Connections use `__slots__` to stay small, so setting another
attribute (`conn.player = ...`) raises `AttributeError`: use
`conn.data = {"player": ...}` or a dict keyed by the connection instead.

Node's `ws` client is strict about subprotocols: if it offered some and the
server answers with none it accepts, or it offered none and the server answers
one, it fails the connection. Declare the subprotocols your clients offer in
`Application(subprotocols=[...])` (or override `select_subprotocol`).

Compression (permessage-deflate, RFC 6455 only; see docs/compression.md):
`Application(compression=False)` declines every client's offer, and
`Application(compression=fn)` asks `fn(request) -> bool` at each handshake;
`conn.compression` tells what was agreed; `conn.send(message, compress=False)`
sends one message uncompressed (`compress=True`: compressed even when small).
"""


def first_paragraph(obj: object) -> str:
    doc = inspect.getdoc(obj) or ""
    return doc.split("\n\n")[0].replace("\n", " ").strip()


def signature(obj: object) -> str:
    try:
        text = str(inspect.signature(obj))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return ""
    return re.sub(r"<(\w+\.\w+): [^>]*>", r"\1", text)  # an enum default as it is written


def member_line(owner: type, name: str) -> tuple[str, str]:
    attr = inspect.getattr_static(owner, name, None)
    if isinstance(attr, property):
        return f"`{name}`", first_paragraph(attr)
    if callable(attr) or isinstance(attr, (classmethod, staticmethod)):
        fn = getattr(owner, name)
        return f"`{name}{signature(fn)}`", first_paragraph(fn)
    return f"`{name}`", ATTRIBUTES.get(name, "")


def section(title: str, obj: object, members: tuple[str, ...] | None = None) -> list[str]:
    lines = [f"## {title}", ""]
    doc = first_paragraph(obj)
    if doc:
        lines += [doc, ""]
    if members:
        lines += ["| member | what |", "| --- | --- |"]
        for name in members:
            left, right = member_line(obj, name)  # type: ignore[arg-type]
            lines.append(f"| {left} | {right} |")
        lines.append("")
    return lines


def public_methods(cls: type) -> tuple[str, ...]:
    return tuple(
        n
        for n, _ in inspect.getmembers(cls)
        if not n.startswith("_") and n in vars(cls) and n not in INTERNAL
    )


def render() -> str:
    out = [INTRO, "## Package", "", "| name | what |", "| --- | --- |"]
    for name in sorted(wsdaemon.__all__):
        if name.startswith("__"):
            continue
        out.append(f"| `{name}` | {first_paragraph(getattr(wsdaemon, name))} |")
    out.append("")
    out += section("Application", wsdaemon.Application, public_methods(wsdaemon.Application))
    out += section("Connection (`conn`)", AppConnection, CONNECTION_API)
    out += section("Server (`conn.server`, `app.server`)", Server, SERVER_API)
    fields = tuple(f.name for f in dataclasses.fields(Request))
    out += section("Request (`conn.request`)", Request, ())
    out += ["| field |", "| --- |", *[f"| `{f}` |" for f in fields], ""]
    out += section("QueryParams (`conn.request.query`)", QueryParams, ("get", "getall", "multi_items"))
    out += section("TaskFuture (what `app.submit` returns)", TaskFuture, public_methods(TaskFuture))
    return "\n".join(out).rstrip() + "\n"


def undocumented() -> list[str]:
    """Public names and members that have no docstring."""
    missing = [
        n for n in wsdaemon.__all__ if not n.startswith("__") and not first_paragraph(getattr(wsdaemon, n))
    ]
    for cls, members in (
        (wsdaemon.Application, public_methods(wsdaemon.Application)),
        (Server, SERVER_API),
        (AppConnection, CONNECTION_API),
        (QueryParams, ("get", "getall", "multi_items")),
        (TaskFuture, public_methods(TaskFuture)),
    ):
        for name in members:
            left, right = member_line(cls, name)
            if not right:
                missing.append(f"{cls.__name__}.{name}")
    return missing


if __name__ == "__main__":
    sys.stdout.write(render())
