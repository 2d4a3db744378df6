"""Test application for /metrics: every kind of traffic the metrics count, on demand.

- ``?token=bad`` is refused by ``on_connect`` (403);
- ``add A B`` runs the ``add`` task in a worker and answers ``sum S``;
- ``flood N`` sends N messages of 64 KiB at once (a client that does not read is a slow consumer);
- anything else is echoed.
"""

from wsdaemon import Application, Reject

app = Application("metricstest")


@app.task
def add(a, b):
    return a + b


@app.on_connect
def check(request):
    if request.query.get("token") == "bad":
        raise Reject(403, "bad token")
    return "player"


@app.on_message
def message(conn, message):
    if isinstance(message, str) and message.startswith("add "):
        a, b = (int(x) for x in message.split()[1:])
        app.submit("add", a, b, callback=lambda future: conn.open and conn.send(f"sum {future.result()}"))
    elif isinstance(message, str) and message.startswith("flood "):
        block = "f" * 65536
        for _ in range(int(message.split()[1])):
            if not conn.open:
                break
            conn.send(block)
    else:
        conn.send(message)
