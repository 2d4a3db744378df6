"""Listener and Admission in process: accept, ask ``admit``, refuse over ``max_connections``.

Clients connect to a real loopback listener; the test turns the loop that accepts them.
"""

import logging
import socket
from functools import partial

import pytest

from tests.support.inprocess import StubHost, turn
from wsdaemon.net import admission as admission_module
from wsdaemon.net.admission import Admission
from wsdaemon.net.listener import Listener
from wsdaemon.net.loop import EVENT_READ
from wsdaemon.net.sockets import bind_socket
from wsdaemon.net.stream import StreamConnection


class Echo(StreamConnection):
    __slots__ = ()

    def data_received(self, data):
        self.write(data)


class Served:
    """A host whose listener serves clients with :class:`Echo`, through an :class:`Admission`."""

    def __init__(self, secure: bool = False, admit: bool = True, **settings) -> None:
        self.host = StubHost(**settings)
        self.loop = self.host.loop
        self.admission = Admission(self.host)
        self.host.client_closed = self.admission.client_closed
        self.handlers: list[Echo] = []
        self.sock = bind_socket("127.0.0.1", 0, 128)
        self.sock.setblocking(False)
        check = partial(self.admission.admit, secure=True) if secure else self.admission.admit
        self.listener = Listener(self.loop, self.sock, self.make_handler, admit=check if admit else None)
        self.loop.register(self.sock, EVENT_READ, self.listener)
        self.clients: list[socket.socket] = []

    def make_handler(self, client, address):
        handler = Echo(self.host, client, address)
        self.handlers.append(handler)
        return handler

    def connect(self) -> socket.socket:
        client = socket.create_connection(self.sock.getsockname(), timeout=5)
        self.clients.append(client)
        turn(self.loop)
        return client

    def close(self) -> None:
        for client in self.clients:
            client.close()
        self.listener.close()
        for handler in self.handlers:
            handler.close_transport()
        self.loop.close()


@pytest.fixture
def served():
    made = []

    def make(**kwargs):
        made.append(Served(**kwargs))
        return made[-1]

    yield make
    for s in made:
        s.close()


def echo_works(served, client) -> bool:
    client.sendall(b"ping")
    for _ in range(20):
        turn(served.loop)
        client.settimeout(0.05)
        try:
            return client.recv(10) == b"ping"
        except TimeoutError:
            continue
    return False


def read_all(served, client, turns: int = 40) -> bytes:
    """What the server sends until it closes (turning the loop for it)."""
    got = b""
    client.settimeout(0.05)
    for _ in range(turns):
        turn(served.loop)
        try:
            data = client.recv(65536)
        except TimeoutError:
            continue
        except ConnectionError:
            break
        if not data:
            break
        got += data
    return got


def test_without_admit_every_client_is_served(served):
    s = served(admit=False, max_connections=1)
    a, b = s.connect(), s.connect()
    assert len(s.handlers) == 2
    assert echo_works(s, a) and echo_works(s, b)
    nodelay = s.handlers[0].sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    assert nodelay


def test_admitted_sockets_count_until_closed(served):
    s = served(max_connections=2)
    s.connect()
    b = s.connect()
    assert len(s.admission.clients) == 2
    b.close()
    turn(s.loop)  # EOF: the handler closes and reports its descriptor
    assert len(s.admission.clients) == 1
    s.connect()
    assert len(s.handlers) == 3 and len(s.admission.clients) == 2


def test_over_the_limit_a_plain_client_reads_503_and_the_limit_recovers(served, caplog):
    caplog.set_level(logging.INFO, logger="wsdaemon.server")
    s = served(max_connections=2)
    a, _b = s.connect(), s.connect()
    refused = s.connect()
    assert len(s.handlers) == 2
    answer = read_all(s, refused)
    assert answer.startswith(b"HTTP/1.1 503 ")
    assert b"Retry-After: 1\r\n" in answer and b"connection limit" in answer
    assert s.admission.over_capacity
    another = s.connect()
    assert read_all(s, another).startswith(b"HTTP/1.1 503 ")
    assert caplog.text.count("connection limit of 2 reached") == 1  # once per episode
    a.close()
    turn(s.loop)
    c = s.connect()
    assert echo_works(s, c) and not s.admission.over_capacity
    assert "below the connection limit again (1 open)" in caplog.text


def test_over_the_limit_a_tls_client_is_closed_without_a_word(served):
    s = served(secure=True, max_connections=1)
    s.connect()
    refused = s.connect()
    assert read_all(s, refused) == b""
    assert s.admission.refusing == 0 and len(s.handlers) == 1


def test_past_max_refusing_clients_are_closed_and_refusals_count_down_again(served, monkeypatch):
    monkeypatch.setattr(admission_module, "MAX_REFUSING", 2)
    s = served(max_connections=1)
    s.connect()
    first, second = s.connect(), s.connect()
    assert s.admission.refusing == 2
    third = s.connect()
    assert read_all(s, third) == b""  # closed: two refusals are being answered
    for client in (first, second):
        assert read_all(s, client).startswith(b"HTTP/1.1 503 ")
        client.close()
    for _ in range(3):
        turn(s.loop)
    assert s.admission.refusing == 0  # a refusal stops counting once its socket is closed
    fourth = s.connect()
    assert read_all(s, fourth).startswith(b"HTTP/1.1 503 ")


def test_a_refusal_the_client_never_reads_ends_at_its_deadline(served):
    s = served(max_connections=1)
    s.connect()
    s.connect()
    (refusal,) = s.admission._refusing
    assert refusal in s.host.deadlines
    refusal.deadline = 0.0
    s.host.deadlines.sweep()
    assert s.admission.refusing == 0 and refusal.transport_closed


def test_max_connections_zero_means_no_limit(served):
    s = served(max_connections=0)
    for _ in range(5):
        s.connect()
    assert len(s.handlers) == 5 and not s.admission.over_capacity


def test_the_limit_is_read_live(served):
    s = served(max_connections=1)
    s.connect()
    s.host.settings.max_connections = 2  # a reload replaces the settings
    s.connect()
    assert len(s.handlers) == 2


def test_a_burst_is_accepted_in_growing_batches_and_every_client_has_nodelay(served):
    s = served(admit=False)
    clients = [socket.create_connection(s.sock.getsockname(), timeout=5) for _ in range(40)]
    s.clients.extend(clients)
    turns = 0
    while len(s.handlers) < 40 and turns < 20:
        turn(s.loop)
        turns += 1
    assert len(s.handlers) == 40 and turns <= 7  # 1, 2, 4, 8, 16, 32 a turn
    assert all(h.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) for h in s.handlers)
    assert s.listener._batch >= 8
    s.connect()  # a lone client after the burst: the batch shrinks back to what one event held
    turn(s.loop)
    assert len(s.handlers) == 41 and s.listener._batch == 1
