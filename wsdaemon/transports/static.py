"""Plain HTTP resources: the test page, the JavaScript client, the status document."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from importlib import resources
from typing import Any

from ..proto.errors import HandshakeError
from ..proto.http11 import Request, build_response

_CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "application/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
}

#: URL path -> file name in ``wsdaemon/static``.
STATIC_FILES = {"/": "index.html", "/index.html": "index.html", "/wsdaemon.js": "wsdaemon.js"}


def load_static_file(name: str) -> bytes:
    return resources.files("wsdaemon").joinpath("static", name).read_bytes()


class StaticFiles:
    """Serves the packaged files from memory (read once at start)."""

    def __init__(self) -> None:
        self._files: dict[str, tuple[bytes, str]] = {}
        for path, name in STATIC_FILES.items():
            content_type = _CONTENT_TYPES.get(os.path.splitext(name)[1], "application/octet-stream")
            self._files[path] = (load_static_file(name), content_type)

    def install(self, router: Any) -> None:
        for path in self._files:
            router.routes[path] = self.serve

    def serve(self, conn: Any, request: Request) -> None:
        body, content_type = self._files[request.path]
        respond_http(
            conn,
            request,
            200,
            [("Content-Type", content_type), ("Cache-Control", "no-cache")],
            body,
        )


def json_resource(document: Callable[[], dict]) -> Callable[[Any, Request], None]:
    """A GET/HEAD route answering ``document()`` as JSON, built fresh for each request (``/status``)."""

    def serve(conn: Any, request: Request) -> None:
        respond_json(conn, request, document())

    return serve


def respond_json(conn: Any, request: Request, doc: dict) -> None:
    body = json.dumps(doc).encode()
    respond_http(
        conn,
        request,
        200,
        [("Content-Type", "application/json"), ("Cache-Control", "no-cache")],
        body,
    )


def respond_http(conn: Any, request: Request, status: int, headers: list, body: bytes) -> None:
    """Answer a GET or HEAD, keeping the connection alive when the client asked for it."""
    if request.method not in ("GET", "HEAD"):
        raise HandshakeError("method not allowed", 405, [("Allow", "GET, HEAD")])
    keep_alive = request.keep_alive
    headers = [*headers, ("Connection", "keep-alive" if keep_alive else "close")]
    response = build_response(status, headers, body)
    if request.method == "HEAD":
        response = response[: len(response) - len(body)]
    conn.respond(response, keep_alive=keep_alive)
