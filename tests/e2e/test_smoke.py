"""The daemon starts, serves the test page and echoes over RFC 6455."""

import urllib.request

import websocket


def test_test_page_and_echo(echo_daemon):
    with urllib.request.urlopen(echo_daemon.http_url + "/") as resp:
        assert resp.status == 200
        assert b"new WebSocket" in resp.read()
    ws = websocket.create_connection(echo_daemon.url, timeout=5)
    ws.send("hello")
    assert ws.recv() == "hello"
    ws.close()
