"""An application with its own pages (``app.route``) and a static directory (``app.static``).

The directory is ``$WSDAEMON_TEST_STATIC``, made by the test, served at ``/game``.
"""

import os

from wsdaemon.application import Application

app = Application("pages")
app.static("/game", os.environ["WSDAEMON_TEST_STATIC"])


@app.route("/hello")
def hello(request):
    return f"<p>hello {request.query.get('name', 'world')}</p>"


@app.route("/api/state")
def state(request):
    return {"players": 2}, 200, {"X-Game": "on"}


@app.route("/teapot")
def teapot(request):
    return b"short and stout", 418, [("Content-Type", "text/plain")]


@app.route("/broken")
def broken(request):
    raise RuntimeError("a bug in a page")


@app.on_message
def echo(conn, message):
    conn.send(message)
