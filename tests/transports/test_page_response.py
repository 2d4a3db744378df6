"""What Application.route and Application.static record, and how a page's return value becomes a response."""

import os

import pytest

from wsdaemon.application import Application
from wsdaemon.transports.static import StaticDirectory, page_response


def test_page_return_values():
    assert page_response("<p>x</p>") == (
        200,
        [("Content-Type", "text/html; charset=utf-8"), ("Cache-Control", "no-cache")],
        b"<p>x</p>",
    )
    status, headers, body = page_response(({"a": 1}, 201))
    assert (status, body, headers[0]) == (201, b'{"a": 1}', ("Content-Type", "application/json"))
    status, headers, body = page_response(
        (b"\0", 200, {"content-type": "image/png", "Cache-Control": "max-age=60"})
    )
    assert headers == [("content-type", "image/png"), ("Cache-Control", "max-age=60")]
    with pytest.raises(TypeError):
        page_response(42)
    with pytest.raises(TypeError):
        page_response(("a", 200, {}, "extra"))


def test_route_records_and_refuses_duplicates():
    app = Application()

    @app.route("/about")
    def about(request):
        return "about"

    assert app.routes == {"/about": about}
    with pytest.raises(ValueError):
        app.route("/about")(about)
    with pytest.raises(ValueError):
        app.route("about")


def test_static_resolves_relative_to_the_calling_module(tmp_path):
    app = Application()
    app.static("/tests/", "..")  # this file's folder's parent: tests/
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    assert app.static_directories == [("/tests", os.path.realpath(here))]
    with pytest.raises(ValueError):
        app.static("/tests", str(tmp_path))  # the same prefix twice
    with pytest.raises(ValueError):
        app.static("/", str(tmp_path))
    with pytest.raises(ValueError):
        app.static("/nothing", str(tmp_path / "missing"))


def test_file_for_stays_inside(tmp_path):
    (tmp_path / "a.txt").write_text("a")
    served = StaticDirectory("/s", str(tmp_path))
    assert served.file_for("/s/a.txt") == os.path.join(os.path.realpath(tmp_path), "a.txt")
    for path in ("/s/../a.txt", "/s/b.txt", "/s/.a", "/s/x\\..\\a.txt", "/s/"):
        assert served.file_for(path) is None, path
