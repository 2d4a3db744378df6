"""``app.route`` and ``app.static`` on a real daemon, through a plain HTTP client (http.client)."""

from __future__ import annotations

import http.client
import json
import os

import pytest
import websocket

APP = "tests.support.pages_app:app"
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256))


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    base = tmp_path_factory.mktemp("site")
    root = base / "static"
    (root / "js").mkdir(parents=True)
    (root / "index.html").write_text("<h1>game</h1>")
    (root / "js" / "game.js").write_text("console.log('go');")
    (root / "style.css").write_text("body {}")
    (root / "level.json").write_text('{"level": 1}')
    (root / "tile.png").write_bytes(PNG)
    (root / "logo.svg").write_text("<svg/>")
    (root / "game.wasm").write_bytes(b"\0asm\1\0\0\0")
    (root / ".secret").write_text("dot file")
    (base / "outside.txt").write_text("not yours")
    os.symlink(base / "outside.txt", root / "escape.txt")
    os.symlink(base, root / "up")
    os.symlink(root / "style.css", root / "alias.css")  # a link that stays inside is fine
    return root


@pytest.fixture(scope="module")
def daemon(site):
    from tests.support.daemon_process import Daemon

    d = Daemon(app=APP, env={"WSDAEMON_TEST_STATIC": str(site)})
    yield d
    d.stop()


def fetch(daemon, path: str, method: str = "GET", headers: dict | None = None):
    conn = http.client.HTTPConnection(daemon.host, daemon.port, timeout=10)
    try:
        conn.request(method, path, headers=headers or {})
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


@pytest.mark.parametrize(
    "path, content_type, body",
    [
        ("/game/", "text/html; charset=utf-8", b"<h1>game</h1>"),
        ("/game/index.html", "text/html; charset=utf-8", b"<h1>game</h1>"),
        ("/game/js/game.js", "text/javascript; charset=utf-8", b"console.log('go');"),
        ("/game/style.css", "text/css; charset=utf-8", b"body {}"),
        ("/game/level.json", "application/json", b'{"level": 1}'),
        ("/game/tile.png", "image/png", PNG),
        ("/game/logo.svg", "image/svg+xml", b"<svg/>"),
        ("/game/game.wasm", "application/wasm", b"\0asm\1\0\0\0"),
        ("/game/alias.css", "text/css; charset=utf-8", b"body {}"),
        ("/game/js%2Fgame.js", "text/javascript; charset=utf-8", b"console.log('go');"),
    ],
)
def test_files_are_served_with_their_content_type(daemon, path, content_type, body):
    status, headers, got = fetch(daemon, path)
    assert status == 200
    assert got == body
    assert headers["content-type"] == content_type
    assert headers["content-length"] == str(len(body))
    assert headers["cache-control"] == "no-cache"
    assert "last-modified" in headers


def test_head_has_the_headers_and_no_body(daemon):
    status, headers, body = fetch(daemon, "/game/tile.png", "HEAD")
    assert status == 200 and body == b""
    assert headers["content-length"] == str(len(PNG)) and headers["content-type"] == "image/png"


def test_revalidation_answers_304(daemon):
    _, headers, _ = fetch(daemon, "/game/style.css")
    status, _, body = fetch(
        daemon, "/game/style.css", headers={"If-Modified-Since": headers["last-modified"]}
    )
    assert status == 304 and body == b""


@pytest.mark.parametrize(
    "path",
    [
        "/game/missing.js",
        "/game/js/",  # a directory without index.html
        "/game/../outside.txt",
        "/game/%2e%2e/outside.txt",
        "/game/js/../../outside.txt",
        "/game/..%2Foutside.txt",
        "/game/escape.txt",  # a symlink out of the directory
        "/game/up/outside.txt",  # through a linked directory
        "/game/.secret",
        "/game/%00",
    ],
)
def test_missing_and_outside_files_are_404(daemon, path):
    status, _, body = fetch(daemon, path)
    assert status == 404, path
    assert b"not yours" not in body


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE"])
def test_only_get_and_head(daemon, method):
    for path in ("/game/index.html", "/hello"):
        status, headers, _ = fetch(daemon, path, method)
        assert status == 405 and headers["allow"] == "GET, HEAD"


def test_prefix_without_slash_redirects(daemon):
    status, headers, _ = fetch(daemon, "/game?level=2")
    assert status == 301 and headers["location"] == "/game/?level=2"


def test_routes(daemon):
    status, headers, body = fetch(daemon, "/hello?name=ada")
    assert (status, body) == (200, b"<p>hello ada</p>")
    assert headers["content-type"] == "text/html; charset=utf-8"
    status, headers, body = fetch(daemon, "/hello", "HEAD")
    assert status == 200 and body == b"" and headers["content-length"] == str(len("<p>hello world</p>"))

    status, headers, body = fetch(daemon, "/api/state")
    assert status == 200 and json.loads(body) == {"players": 2}
    assert headers["content-type"] == "application/json" and headers["x-game"] == "on"

    status, headers, body = fetch(daemon, "/teapot")
    assert (status, body, headers["content-type"]) == (418, b"short and stout", "text/plain")


def test_a_failing_page_is_500_and_the_daemon_goes_on(daemon):
    status, _, _ = fetch(daemon, "/broken")
    assert status == 500
    assert "a bug in a page" in daemon.log()
    assert fetch(daemon, "/hello")[0] == 200


def test_the_builtin_resources_and_websocket_still_work(daemon):
    assert fetch(daemon, "/")[0] == 200
    assert json.loads(fetch(daemon, "/status")[2])["connections"] == 0
    assert fetch(daemon, "/nowhere")[0] == 404
    ws = websocket.create_connection(daemon.url, timeout=10)
    try:
        ws.send("hi")
        assert ws.recv() == "hi"
    finally:
        ws.close()
