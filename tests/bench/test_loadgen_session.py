"""bench/loadgen's --session mode against the daemon, about a second each (profiles h and hb).

The session profiles are only worth their figure if the load generator speaks the
envelope as the JS client does: the hello first, messages numbered by their place,
acks between frames. The daemon checks that for us: a bad control message or an
ack beyond what it sent closes the connection (counted by the load generator), and
its ``/status`` shows that every connection was a session.
"""

import json
import urllib.request

from tests.bench.test_loadgen_deflate import loadgen, run_loadgen  # noqa: F401 (a fixture)


def test_session_echo(loadgen, daemon_factory):  # noqa: F811
    d = daemon_factory()
    result = run_loadgen(loadgen, d.port, "--mode", "echo", "--conns", "20", "--inflight", "4", "--session")
    for fault in ("protocol_errors", "size_errors", "closed_by_server", "handshake_errors", "connect_errors"):
        assert result[fault] == 0, (fault, result)
    assert result["messages"] >= 1000, result
    status = json.loads(urllib.request.urlopen(d.http_url + "/status", timeout=5).read())
    # All 20 were sessions, and the load generator's exit without a close frame suspended them.
    assert status["resumable_sessions"] == {"sessions": 20, "suspended": 20}, status
