"""/metrics against the real daemon: parsed with prometheus_client's own parser, every series moved
by exactly what the test did; who may read it (--metrics-allow, --metrics-listen)."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request

import pytest
from websockets.sync.client import connect

from tests.support.lp_helpers import Session, wait_for
from tests.support.metrics_scrape import scrape
from tests.support.rawclient import MASK, handshake_request, read_head
from wsdaemon.proto.rfc6455 import encode_frame

APP = "tests.support.metrics_app:app"
MESSAGES = ["hello", "x" * 100, "état", "4", "five"]


def delta(before, after, name, **labels) -> float:
    key = (name, tuple(sorted(labels.items())))
    return after.get(key, 0.0) - before.get(key, 0.0)


@pytest.fixture
def d(daemon_factory):
    return daemon_factory(
        "--workers", "1", "--max-write-buffer", str(256 * 1024), "--ping-interval", "0", app=APP
    )


def test_websocket_traffic_moves_each_series_exactly(d):
    before = scrape(d.http_url)
    for _ in range(3):
        with connect(d.url, compression=None, open_timeout=10) as ws:
            for m in MESSAGES:
                ws.send(m)
                assert ws.recv(timeout=10) == m
    wait_for(
        lambda: (
            delta(
                before,
                scrape(d.http_url),
                "wsdaemon_connections_closed_total",
                transport="rfc6455",
                code="1000",
            )
            == 3
        )
    )
    after = scrape(d.http_url)
    assert delta(before, after, "wsdaemon_connections_opened_total", transport="rfc6455") == 3
    assert delta(before, after, "wsdaemon_connections_closed_total", transport="rfc6455", code="1000") == 3
    assert after[("wsdaemon_connections", (("transport", "rfc6455"),))] == 0
    # each connection: five text frames and a close frame, masked (2 + 4 bytes of header, 2 of close code)
    assert delta(before, after, "wsdaemon_received_frames_total", transport="rfc6455") == 3 * 6
    frame_bytes = sum(6 + len(m.encode()) for m in MESSAGES) + 8
    assert delta(before, after, "wsdaemon_received_bytes_total", transport="rfc6455") == 3 * frame_bytes
    echo_bytes = sum(2 + len(m.encode()) for m in MESSAGES) + 4  # unmasked echoes and the close reply
    assert (
        delta(before, after, "wsdaemon_sent_bytes_total", transport="rfc6455") > 3 * echo_bytes
    )  # + the 101s


def test_refusals_slow_consumers_tasks_and_long_polling(d):
    before = scrape(d.http_url)
    # a 403 from on_connect
    with pytest.raises(Exception) as refused:
        connect(d.url + "?token=bad", open_timeout=10)
    assert "403" in str(refused.value)
    # a worker task
    with connect(d.url, compression=None, open_timeout=10) as ws:
        ws.send("add 2 3")
        assert ws.recv(timeout=20) == "sum 5"
    # a slow consumer: a raw client that asks for 8 MiB and reads nothing
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((d.host, d.port))
    sock.sendall(handshake_request("/"))
    read_head(sock)
    sock.sendall(encode_frame(0x1, b"flood 128", mask=MASK))
    wait_for(
        lambda: delta(before, scrape(d.http_url), "wsdaemon_slow_consumers_closed_total") == 1, timeout=20
    )
    sock.close()
    # a long-polling session
    lp = Session(d, "/")
    lp.send("over lp")
    lp.poll_until(lambda s: "over lp" in s.texts())
    after = scrape(d.http_url)
    assert delta(before, after, "wsdaemon_requests_refused_total", status="403") == 1
    assert delta(before, after, "wsdaemon_worker_tasks_submitted_total") == 1
    assert delta(before, after, "wsdaemon_worker_tasks_finished_total", outcome="completed") == 1
    assert delta(before, after, "wsdaemon_worker_tasks_finished_total", outcome="failed") == 0
    assert delta(before, after, "wsdaemon_worker_task_duration_seconds_count") == 1
    assert delta(before, after, "wsdaemon_slow_consumers_closed_total") == 1
    assert delta(before, after, "wsdaemon_connections_closed_total", transport="rfc6455", code="1008") == 1
    assert delta(before, after, "wsdaemon_connections_opened_total", transport="long-polling") == 1
    assert after[("wsdaemon_longpoll_sessions", ())] == 1
    assert after[("wsdaemon_connections", (("transport", "long-polling"),))] == 1
    assert after[("wsdaemon_workers", ())] == 1
    assert delta(before, after, "wsdaemon_loop_iterations_total") > 0
    # the sweep timers fire within seconds: each firing is one lag observation
    wait_for(lambda: scrape(d.http_url)[("wsdaemon_loop_lag_seconds_count", ())] > 0)
    assert after[("process_open_fds", ())] > 0 and after[("process_resident_memory_bytes", ())] > 0
    lp.close_sockets()


def test_the_public_port_serves_metrics_only_to_the_allow_list(daemon_factory):
    d = daemon_factory("--metrics-allow", "10.0.0.0/8")
    for path in ("/metrics", "/status"):
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(d.http_url + path, timeout=10)
        assert refused.value.code == 403


def test_the_metrics_listener_serves_metrics_and_status_and_nothing_else(daemon_factory):
    port = _free_port()
    d = daemon_factory("--metrics-allow", "", "--metrics-listen", f"127.0.0.1:{port}")
    admin = f"http://127.0.0.1:{port}"
    d.wait_for_log(f"metrics and status on 127.0.0.1 port {port}")
    assert ("wsdaemon_loop_iterations_total", ()) in scrape(admin)
    assert json.loads(urllib.request.urlopen(admin + "/status", timeout=10).read())["connections"] == 0
    with pytest.raises(urllib.error.HTTPError) as missing:
        urllib.request.urlopen(admin + "/", timeout=10)
    assert missing.value.code == 404
    with pytest.raises(urllib.error.HTTPError) as public:
        urllib.request.urlopen(d.http_url + "/metrics", timeout=10)
    assert public.value.code == 403


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_scraping_does_not_disturb_traffic(d):
    """Scrapes while a client echoes: both keep working (the cost is measured in bench/)."""
    with connect(d.url, compression=None, open_timeout=10) as ws:
        for i in range(20):
            scrape(d.http_url)
            ws.send(str(i))
            assert ws.recv(timeout=10) == str(i)


def test_every_metric_the_grafana_dashboard_queries_exists(daemon_factory, redis_server):
    """etc/grafana/wsdaemon.json: each name in a panel's query (and its variable) is in a real scrape
    (of a daemon with workers and a broker, so their series are there)."""
    import re

    d = daemon_factory("--workers", "1", "--broker", redis_server.url, app=APP)
    wait_for(lambda: ("wsdaemon_broker_up", (("link", "subscriber"),)) in scrape(d.http_url))

    from tests.support.daemon_process import REPO

    dashboard = json.loads((REPO / "etc" / "grafana" / "wsdaemon.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    exprs += [v["query"] for v in dashboard["templating"]["list"] if v["type"] == "query"]
    queried = {name for e in exprs for name in re.findall(r"\b(?:wsdaemon|process)_[a-z_]+", e)}
    assert len(queried) >= 25, queried
    lp = Session(d, "/")  # long-polling series appear with a session
    with connect(d.url, open_timeout=10):  # labelled counters appear with their first sample
        pass
    with pytest.raises(urllib.error.HTTPError):
        urllib.request.urlopen(d.http_url + "/no-such-page", timeout=10)
    wait_for(
        lambda: (
            ("wsdaemon_connections_closed_total", (("code", "1000"), ("transport", "rfc6455")))
            in scrape(d.http_url)
        )
    )
    names = {name for name, _ in scrape(d.http_url)}
    assert queried <= names, sorted(queried - names)
    lp.close_sockets()
