"""Who the client is behind a trusted proxy (wsdaemon/proto/forwarded.py), without sockets."""

import pytest

from wsdaemon.proto.forwarded import ForwardedClient, ProxyTrust, parse_forwarded
from wsdaemon.proto.http11 import Headers

PROXY = ("127.0.0.1", 50000)


def client(trust: str, peer=PROXY, **headers: str):
    return ProxyTrust(trust).client(peer, Headers([(k.replace("_", "-"), v) for k, v in headers.items()]))


def test_nobody_is_trusted_by_default():
    assert not ProxyTrust("")
    assert client("", X_Forwarded_For="203.0.113.7") is None


def test_an_untrusted_peer_is_not_believed():
    assert client("10.0.0.1", X_Forwarded_For="203.0.113.7") is None
    assert client("10.0.0.0/8", peer=("192.0.2.1", 1), Forwarded="for=203.0.113.7") is None


def test_x_forwarded_for_from_the_right_past_trusted_hops():
    got = client("127.0.0.1, 10.0.0.0/8", X_Forwarded_For="198.51.100.1, 203.0.113.7, 10.1.2.3")
    assert got == ForwardedClient(("203.0.113.7", 0), None)  # a client's own claim (198.51...) ignored


def test_every_hop_trusted_gives_the_leftmost():
    assert client("127.0.0.1, 10.0.0.0/8", X_Forwarded_For="10.9.9.9, 10.1.1.1").address == ("10.9.9.9", 0)


def test_x_forwarded_proto():
    assert client("127.0.0.1", X_Forwarded_For="203.0.113.7", X_Forwarded_Proto="https").secure is True
    assert client("127.0.0.1", X_Forwarded_For="203.0.113.7", X_Forwarded_Proto="http").secure is False
    assert client("127.0.0.1", X_Forwarded_For="203.0.113.7", X_Forwarded_Proto="gopher").secure is None
    # one scheme per hop: the one of the hop that saw the client
    got = client(
        "127.0.0.1, 10.0.0.0/8", X_Forwarded_For="203.0.113.7, 10.1.1.1", X_Forwarded_Proto="https, http"
    )
    assert got == ForwardedClient(("203.0.113.7", 0), True)


def test_forwarded_rfc7239():
    got = client(
        "127.0.0.1, 10.0.0.0/8", Forwarded='for="[2001:db8::1]:4711";proto=https, for=10.0.0.2;proto=http'
    )
    assert got == ForwardedClient(("2001:db8::1", 4711), True)
    assert client("127.0.0.1", Forwarded="For=192.0.2.60;Proto=HTTP;by=203.0.113.43").address == (
        "192.0.2.60",
        0,
    )
    # Forwarded wins over X-Forwarded-For when both are there
    got = client("127.0.0.1", Forwarded="for=192.0.2.60", X_Forwarded_For="203.0.113.7")
    assert got.address == ("192.0.2.60", 0)


@pytest.mark.parametrize(
    "value",
    [
        "for=unknown",
        "for=_hidden",
        'for="[2001:db8::1"',
        "for=1.2.3.4:99999",
        "for=",
        "garbage",
        ";;;,,,",
        '"',
    ],
)
def test_obfuscated_or_malformed_nearest_hop_keeps_the_peer(value):
    assert client("127.0.0.1", Forwarded=value) is None


def test_a_malformed_hop_further_left_stops_the_walk_at_the_last_good_one():
    got = client("127.0.0.1, 10.0.0.0/8", X_Forwarded_For="garbage, 10.0.0.7")
    assert got.address == ("10.0.0.7", 0)  # the last address a trusted proxy vouched for


def test_ipv4_mapped_peer_and_ipv6_networks():
    assert (
        client("127.0.0.1", peer=("::ffff:127.0.0.1", 1), X_Forwarded_For="203.0.113.7").address[0]
        == "203.0.113.7"
    )
    assert client("::1", peer=("::1", 1), X_Forwarded_For="2001:db8::5").address == ("2001:db8::5", 0)


def test_parse_forwarded_quotes_and_escapes():
    assert parse_forwarded(['for="a,b";proto=https, for=c']) == [
        {"for": "a,b", "proto": "https"},
        {"for": "c"},
    ]
    assert parse_forwarded(['for="x\\"y"']) == [{"for": 'x"y'}]


@pytest.mark.parametrize("bad", ["example.com", "10.0.0.0/33", "1.2.3"])
def test_a_bad_trusted_proxies_value_is_an_error(bad):
    with pytest.raises(ValueError, match="trusted_proxies"):
        ProxyTrust(bad)
