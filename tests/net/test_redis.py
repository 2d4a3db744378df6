"""RedisLink against a real redis-server, driven by the daemon's own EventLoop in the test.

Pipelined commands answered in order, AUTH and SELECT, TCP, Unix socket and TLS,
the subscriber mode, the bounded buffer, and Redis going away three ways: killed
(reset), restarted on the same port, and stopped with SIGSTOP (silent: found by
the idle ping), each time coming back by itself.
"""

from __future__ import annotations

import logging
import time

import pytest

from tests.support.redis_server import RedisServer
from wsdaemon.net.loop import EventLoop
from wsdaemon.net.redis import LINK_LOST, LinkState, RedisLink
from wsdaemon.proto.redis_url import parse_redis_url
from wsdaemon.proto.resp import ReplyError


def run_until(loop: EventLoop, done, timeout: float = 5.0) -> None:
    """Run ``loop`` until ``done()`` is true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout

    def check():
        if done() or time.monotonic() > deadline:
            loop.stop()

    timer = loop.call_every(0.005, check)
    try:
        loop.run()
    finally:
        timer.cancel()
    assert done(), f"not done within {timeout} s"


def link_to(loop: EventLoop, url: str, **kwargs) -> RedisLink:
    kwargs.setdefault("max_buffer", 1 << 20)
    kwargs.setdefault("on_ready", lambda: None)
    link = RedisLink(loop, parse_redis_url(url), name="test", **kwargs)
    link.start()
    return link


@pytest.fixture
def loop():
    loop = EventLoop()
    yield loop
    loop.close()


def test_pipelined_commands_are_answered_in_order(loop, redis_server):
    link = link_to(loop, redis_server.url)
    run_until(loop, lambda: link.ready)
    replies = []
    for _ in range(200):
        link.command("INCR", "counter", callback=replies.append)
    link.command("GET", "counter", callback=replies.append)
    link.command("HGET", "counter", "x", callback=replies.append)  # wrong type: an error reply, in its place
    link.command("PING", callback=replies.append)
    run_until(loop, lambda: len(replies) == 203)
    assert replies[:200] == list(range(1, 201))
    assert replies[200] == b"200"
    assert isinstance(replies[201], ReplyError) and "WRONGTYPE" in str(replies[201])
    assert replies[202] == b"PONG"
    link.close()


def test_auth_and_select(loop, tmp_path):
    server = RedisServer(tmp_path, password="s3cret")
    try:
        link = link_to(loop, f"redis://:s3cret@127.0.0.1:{server.port}/3")
        other = link_to(loop, f"redis://:s3cret@127.0.0.1:{server.port}/0")
        run_until(loop, lambda: link.ready and other.ready)
        got = []
        link.command("SET", "k", "in three")
        link.command("GET", "k", callback=got.append)
        run_until(loop, lambda: got)
        other.command("GET", "k", callback=got.append)
        run_until(loop, lambda: len(got) == 2)
        assert got == [b"in three", None]
        link.close()
        other.close()
    finally:
        server.stop()


def test_a_wrong_password_is_logged_and_retried_not_fatal(loop, tmp_path, caplog):
    server = RedisServer(tmp_path, password="right")
    try:
        with caplog.at_level(logging.WARNING, logger="wsdaemon.broker"):
            link = link_to(loop, f"redis://:wrong@127.0.0.1:{server.port}/0")
            run_until(loop, lambda: "refused the handshake" in caplog.text)
        assert not link.ready and "WRONGPASS" in caplog.text
        link.close()
        assert link.state is LinkState.CLOSED
    finally:
        server.stop()


def test_unix_socket_and_tls(loop, tmp_path):
    server = RedisServer(tmp_path, tls=True)
    try:
        unix = link_to(loop, f"unix://{server.unix_path}?db=1")
        tls = link_to(loop, server.tls_url)
        run_until(loop, lambda: unix.ready and tls.ready)
        got = []
        unix.command("SET", "via", "unix")
        tls.command("SELECT", 1)
        tls.command("GET", "via", callback=got.append)
        tls.command("SET", "big", b"x" * 200_000)  # several TLS records each way
        tls.command("GET", "big", callback=got.append)
        run_until(loop, lambda: len(got) == 2)
        assert got == [b"unix", b"x" * 200_000]
        unix.close()
        tls.close()
    finally:
        server.stop()


def test_a_certificate_not_signed_by_the_named_ca_is_refused(loop, tmp_path, caplog):
    server = RedisServer(tmp_path, tls=True)
    try:
        with caplog.at_level(logging.WARNING, logger="wsdaemon.broker"):
            link = link_to(loop, f"rediss://127.0.0.1:{server.tls_port}/0")  # the system CAs: not ours
            run_until(loop, lambda: "TLS" in caplog.text)
        assert not link.ready and "CERTIFICATE_VERIFY_FAILED" in caplog.text
        link.close()
    finally:
        server.stop()


def test_subscriber_mode_gets_every_reply(loop, redis_server):
    pushed = []
    sub = link_to(loop, redis_server.url, on_push=pushed.append, keep_queue=False)
    pub = link_to(loop, redis_server.url)
    run_until(loop, lambda: sub.ready and pub.ready)
    sub.command("SUBSCRIBE", "ch")
    run_until(loop, lambda: pushed)
    assert pushed[0] == [b"subscribe", b"ch", 1]
    for i in range(50):
        pub.command("PUBLISH", "ch", f"m{i}")
    run_until(loop, lambda: len(pushed) == 51)
    assert [p[2] for p in pushed[1:]] == [f"m{i}".encode() for i in range(50)]
    sub.close()
    pub.close()


def test_the_buffer_is_bounded_while_redis_is_away(loop, redis_server):
    link = link_to(loop, redis_server.url, max_buffer=1000)
    run_until(loop, lambda: link.ready)
    redis_server.kill()
    run_until(loop, lambda: not link.ready)
    accepted = sum(link.command("PUBLISH", "ch", "x" * 50) for _ in range(100))
    assert 10 <= accepted < 20  # 70-byte commands in 1000 bytes
    assert link.buffered <= 1000
    link.close()


def test_redis_restarted_the_link_comes_back_and_sends_what_waited(loop, redis_server, caplog):
    ready_count = []
    link = link_to(loop, redis_server.url, on_ready=lambda: ready_count.append(1))
    run_until(loop, lambda: link.ready)
    lost = []
    link.command("BLPOP", "empty-list", 5, callback=lost.append)  # in flight when Redis dies
    run_until(loop, lambda: True, timeout=0.05)
    with caplog.at_level(logging.INFO, logger="wsdaemon.broker"):
        redis_server.kill()
        run_until(loop, lambda: not link.ready)
        assert lost == [LINK_LOST]
        link.command("SET", "after", "restart")
        redis_server.start()
        run_until(loop, lambda: link.ready, timeout=5)
        got = []
        link.command("GET", "after", callback=got.append)
        run_until(loop, lambda: got)
    assert got == [b"restart"]
    assert len(ready_count) == 2 and link.losses == 1
    assert "lost" in caplog.text and "up again" in caplog.text
    link.close()


def test_a_silent_redis_is_found_by_the_ping_and_left(loop, redis_server):
    link = link_to(loop, redis_server.url, reply_timeout=1.0)
    run_until(loop, lambda: link.ready)
    redis_server.pause()
    try:
        started = time.monotonic()
        run_until(loop, lambda: not link.ready, timeout=6)
        assert time.monotonic() - started < 4  # idle ping after 1 s, no reply for 1 s
    finally:
        redis_server.resume()
    run_until(loop, lambda: link.ready, timeout=6)
    link.close()


def test_nothing_listening_is_retried_with_one_log_line(loop, caplog):
    from tests.support.daemon_process import free_port

    port = free_port()
    with caplog.at_level(logging.WARNING, logger="wsdaemon.broker"):
        link = link_to(loop, f"redis://127.0.0.1:{port}/0")
        run_until(loop, lambda: link._attempts >= 4, timeout=5)
    assert caplog.text.count("cannot reach Redis") == 1 and "Connection refused" in caplog.text
    link.close()
