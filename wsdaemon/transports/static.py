"""Plain HTTP resources: the test page, the JavaScript client, the status document, and the
application's own pages and static directories."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterable, Mapping
from email.utils import formatdate, parsedate_to_datetime
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


# -- the application's own pages and files (Application.route and .static) -------

log = logging.getLogger("wsdaemon.static")

#: Content types of files served from an application's static directories.
FILE_CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".htm": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".map": "application/json",
    ".txt": "text/plain; charset=utf-8",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".webp": "image/webp",
    ".ico": "image/x-icon",
    ".svg": "image/svg+xml",
    ".wasm": "application/wasm",
    ".woff2": "font/woff2",
    ".mp3": "audio/mpeg",
    ".ogg": "audio/ogg",
}
#: Browsers revalidate (Last-Modified) before each use: an edited file shows at the next load.
STATIC_CACHE_CONTROL = "no-cache"


class StaticDirectory:
    """Files under one directory by URL path (GET and HEAD), for :meth:`Application.static`.

    ``..``, dot files and symlinks that lead out of the directory are 404; a
    directory serves its ``index.html``. Files are read when asked for (small
    game assets: the read is short), so edits show without a restart.
    """

    def __init__(self, url_prefix: str, directory: str) -> None:
        self.url_prefix = url_prefix.rstrip("/")
        self.root = os.path.realpath(directory)

    def install(self, router: Any) -> None:
        router.prefixes[self.url_prefix + "/"] = self.serve
        router.routes[self.url_prefix] = self.redirect

    def redirect(self, conn: Any, request: Request) -> None:
        """``/game`` -> ``/game/``, so that the index page's relative links resolve."""
        location = self.url_prefix + "/" + ("?" + request.query_string if request.query_string else "")
        respond_http(conn, request, 301, [("Location", location)], b"")

    def file_for(self, url_path: str) -> str | None:
        """The file a URL path names, or None when there is none or it lies outside the directory."""
        relative = url_path[len(self.url_prefix) + 1 :]
        parts = [part for part in relative.split("/") if part]
        if any(part.startswith(".") or "\\" in part or "\0" in part for part in parts):
            return None
        path = os.path.realpath(os.path.join(self.root, *parts))
        if path != self.root and not path.startswith(self.root + os.sep):
            return None  # a symlink out of the directory
        if os.path.isdir(path):
            path = os.path.join(path, "index.html")
        return path if os.path.isfile(path) else None

    def serve(self, conn: Any, request: Request) -> None:
        if request.method not in ("GET", "HEAD"):
            raise HandshakeError("method not allowed", 405, [("Allow", "GET, HEAD")])
        path = self.file_for(request.path)
        if path is None:
            raise HandshakeError("not found", 404)
        try:
            with open(path, "rb") as f:
                modified = os.fstat(f.fileno()).st_mtime
                body = f.read()
        except OSError:
            raise HandshakeError("not found", 404) from None
        content_type = FILE_CONTENT_TYPES.get(os.path.splitext(path)[1].lower(), "application/octet-stream")
        headers = [
            ("Content-Type", content_type),
            ("Cache-Control", STATIC_CACHE_CONTROL),
            ("Last-Modified", formatdate(modified, usegmt=True)),
            ("X-Content-Type-Options", "nosniff"),
        ]
        since = request.headers.get("If-Modified-Since")
        if since is not None and _not_modified_since(since, modified):
            respond_http(conn, request, 304, headers, b"")
            return
        respond_http(conn, request, 200, headers, body)


def _not_modified_since(since: str, modified: float) -> bool:
    try:
        return int(modified) <= parsedate_to_datetime(since).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return False


class PageRoute:
    """An :meth:`Application.route` handler as a router handler: calls it and answers."""

    def __init__(self, fn: Callable[[Request], Any]) -> None:
        self.fn = fn

    def __call__(self, conn: Any, request: Request) -> None:
        if request.method not in ("GET", "HEAD"):
            raise HandshakeError("method not allowed", 405, [("Allow", "GET, HEAD")])
        try:
            status, headers, body = page_response(self.fn(request))
        except Exception:
            log.exception("error in page %s for %s", getattr(self.fn, "__name__", self.fn), request.path)
            raise HandshakeError("internal server error", 500) from None
        respond_http(conn, request, status, headers, body)


def page_response(result: Any) -> tuple[int, list[tuple[str, str]], bytes]:
    """(status, headers, body) from what a page returned: body, (body, status) or (body, status, headers)."""
    status, headers = 200, []
    body = result
    if isinstance(result, tuple):
        if len(result) == 2:
            body, status = result
        elif len(result) == 3:
            body, status, headers = result
        else:
            raise TypeError("a page returns body, (body, status) or (body, status, headers)")
    headers = list(headers.items()) if isinstance(headers, Mapping) else list(headers)
    if isinstance(body, str):
        body, default_type = body.encode("utf-8"), "text/html; charset=utf-8"
    elif isinstance(body, (bytes, bytearray, memoryview)):
        body, default_type = bytes(body), "application/octet-stream"
    elif isinstance(body, (dict, list)):
        body, default_type = json.dumps(body).encode("utf-8"), "application/json"
    else:
        raise TypeError(f"a page's body is str, bytes, dict or list, not {type(body).__name__}")
    names = {name.lower() for name, _ in headers}
    if "content-type" not in names:
        headers.append(("Content-Type", default_type))
    if "cache-control" not in names:
        headers.append(("Cache-Control", "no-cache"))
    return int(status), headers, body


def install_app_pages(
    router: Any, routes: Mapping[str, Callable[[Request], Any]], directories: Iterable[tuple[str, str]]
) -> None:
    """Put an application's declared pages and static directories on ``router``."""
    for prefix, directory in directories:
        StaticDirectory(prefix, directory).install(router)
    for path, fn in routes.items():
        router.routes[path] = PageRoute(fn)
