"""The transports' seam: they run on any TransportHost, the Server is one, and one subprotocol check."""

import inspect

import pytest

from tests.support.inprocess import (
    CLIENT_ADDRESS,
    SlowReader,
    StubHost,
    echo_app,
    small_socketpair,
    status_of,
)
from tests.support.rawclient import MASK, handshake_request
from tests.transports.test_swap import hixie_request
from wsdaemon.net.loop import EVENT_READ
from wsdaemon.net.stream import StreamHost
from wsdaemon.proto.codes import CloseCode
from wsdaemon.proto.errors import HandshakeError
from wsdaemon.proto.forwarded import ProxyTrust
from wsdaemon.proto.http11 import Request
from wsdaemon.proto.origin import OriginPolicy
from wsdaemon.proto.rfc6455 import OP_CLOSE, OP_TEXT, encode_frame
from wsdaemon.server import Server
from wsdaemon.transports.appconnection import AppConnection
from wsdaemon.transports.connlog import ConnectionLog
from wsdaemon.transports.host import TransportHost
from wsdaemon.transports.http import HttpConnection
from wsdaemon.transports.rooms import RoomRegistry
from wsdaemon.transports.upgrade import Router, select_subprotocol


class StubTransportHost(StubHost):
    """A TransportHost without a Server: what the transports may use, and a record of the calls."""

    def __init__(self, app, **settings) -> None:
        super().__init__(**settings)
        self.app = app
        self.stopping = False
        self.router = Router()
        self.origin_policy = OriginPolicy(self.settings.allowed_origins, self.settings.allow_missing_origin)
        self.origins_checked: list[str] = []
        self.opened: list[AppConnection] = []
        self.closed_conns: list[AppConnection] = []
        self.room_registry = RoomRegistry(lambda room, message, exclude, key: 0)
        self.proxy_trust = ProxyTrust(self.settings.trusted_proxies) or None
        self.connection_log = ConnectionLog(self.loop)

    def authenticate(self, request: Request):
        return self.app.handle_connect(request)

    def check_origin(self, request: Request) -> None:
        self.origins_checked.append(request.path)

    def connection_opened(self, conn) -> None:
        self.opened.append(conn)

    def connection_closed(self, conn) -> None:
        self.closed_conns.append(conn)


def protocol_members(protocol: type) -> set[str]:
    names = set(getattr(protocol, "__annotations__", {}))
    names |= {n for n, v in vars(protocol).items() if inspect.isfunction(v) and not n.startswith("_")}
    return names


def test_the_server_has_everything_a_transport_host_declares():
    members = protocol_members(TransportHost) | protocol_members(StreamHost)
    assert {"app", "stopping", "router", "origin_policy", "check_origin", "connection_opened"} <= members
    assert {"authenticate", "room_registry"} <= members
    server = Server(echo_app())
    try:
        missing = [name for name in sorted(members) if not hasattr(server, name)]
    finally:
        server.close()
    assert missing == []


@pytest.fixture
def host():
    host = StubTransportHost(echo_app(), close_timeout=2.0)
    yield host
    host.loop.close()


def serve(host, draft_request: bytes) -> SlowReader:
    server_side, client_side = small_socketpair()
    conn = HttpConnection(host, server_side, CLIENT_ADDRESS)
    host.loop.register(server_side, EVENT_READ, conn)
    client = SlowReader(host.loop, client_side)
    client.send(draft_request)
    return client


def test_rfc6455_runs_on_a_host_without_a_server(host):
    client = serve(host, handshake_request("/chat"))
    assert status_of(client.take_head()) == 101
    assert host.origins_checked == ["/chat"] and len(host.opened) == 1
    conn = host.opened[0]
    assert conn.server is host  # the public name of the host
    client.send(encode_frame(OP_TEXT, b"hi", mask=MASK))
    client.pump(lambda got: len(got) >= 4)
    assert client.take(4) == bytes([0x80 | OP_TEXT, 2]) + b"hi"
    client.send(encode_frame(OP_CLOSE, CloseCode.NORMAL_CLOSURE.to_bytes(2, "big"), mask=MASK))
    client.pump(lambda got: client.eof)
    assert host.closed_conns == [conn]
    assert conn.close_code == CloseCode.NORMAL_CLOSURE


def test_hixie76_runs_on_a_host_without_a_server(host):
    head, key3, answer = hixie_request(76)
    client = serve(host, head + key3)
    assert status_of(client.take_head()) == 101
    client.pump(lambda got: len(got) >= len(answer))
    assert client.take(len(answer)) == answer
    assert host.origins_checked == ["/chat"] and len(host.opened) == 1


def test_the_default_hooks_do_nothing():
    class Bare(AppConnection):
        __slots__ = ()

    bare = Bare()
    assert bare.check_keepalive(0.0, 1.0, 1.0) is None
    assert bare.check_idle(0.0, 1.0) is None


class Picks:
    def __init__(self, choice):
        self.choice = choice
        self.asked = []

    def select_subprotocol(self, offered, request):
        self.asked.append(offered)
        return self.choice


def test_select_subprotocol_asks_only_when_something_is_offered():
    app = Picks("chat")
    assert select_subprotocol(app, [], None) is None
    assert app.asked == []
    assert select_subprotocol(app, ["chat", "superchat"], None) == "chat"
    assert select_subprotocol(Picks(None), ["chat"], None) is None


def test_a_subprotocol_the_client_did_not_offer_is_a_500():
    with pytest.raises(HandshakeError) as info:
        select_subprotocol(Picks("other"), ["chat"], None)
    assert info.value.status == 500
