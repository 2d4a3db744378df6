"""The Origin policy, without I/O: exact origins, wildcard subdomains, ports, missing and odd headers."""

import pytest

from wsdaemon.proto.http11 import Headers
from wsdaemon.proto.origin import OriginPolicy, is_loopback_host, parse_pattern, request_origin


@pytest.fixture
def policy():
    return OriginPolicy("https://game.example.com, https://*.example.org, localhost:8080, http://[::1]:9000")


@pytest.mark.parametrize(
    "origin",
    [
        "https://game.example.com",
        "HTTPS://Game.Example.com",
        "https://game.example.com:443",
        "https://a.example.org",
        "https://a.b.example.org",
        "http://localhost:8080",
        "https://localhost:8080",
        "http://[::1]:9000",
    ],
)
def test_allowed(policy, origin):
    assert policy.check(origin) is None


@pytest.mark.parametrize(
    "origin",
    [
        "http://game.example.com",  # scheme differs
        "https://game.example.com:8443",  # port differs
        "https://evil.com",
        "https://game.example.com.evil.com",
        "https://example.org",  # a wildcard does not match the bare domain
        "https://aexample.org",
        "http://localhost",
        "null",
    ],
)
def test_refused(policy, origin):
    assert policy.check(origin) == "origin not allowed"


@pytest.mark.parametrize(
    "origin",
    ["", "example.com", "https://", "https://a.example.org/path", "https://*.example.org", "ftp://x", "\x00"],
)
def test_malformed_origin_is_refused(policy, origin):
    assert policy.check(origin) == "malformed Origin header"


def test_empty_list_allows_everything_and_missing_origin_follows_its_own_switch():
    assert OriginPolicy("").allow_all
    assert OriginPolicy("").check("https://anything.example") is None
    assert OriginPolicy("").check(None) is None
    assert OriginPolicy("", allow_missing=False).check(None) == "missing Origin header"
    assert OriginPolicy("https://a.example").check(None) is None


def test_null_origin_only_when_listed():
    assert OriginPolicy("null").check("null") is None
    assert OriginPolicy("null").check("https://a.example") == "origin not allowed"


@pytest.mark.parametrize(
    "entry", ["https://exa mple.com", "ftp://example.com", "https://example.com:99999", "https://*", "*"]
)
def test_bad_allow_list_entries_fail_at_start(entry):
    with pytest.raises(ValueError):
        parse_pattern(entry)


def test_request_origin_reads_both_headers_and_refuses_duplicates():
    assert request_origin(Headers([("Origin", "https://a.example")])) == "https://a.example"
    assert request_origin(Headers([("Sec-WebSocket-Origin", "https://b.example")])) == "https://b.example"
    assert request_origin(Headers([])) is None
    twice = Headers([("Origin", "https://a.example"), ("Origin", "https://b.example")])
    assert OriginPolicy("https://a.example").check(request_origin(twice)) == "malformed Origin header"


@pytest.mark.parametrize(
    "host, loopback",
    [
        ("127.0.0.1", True),
        ("127.0.0.2", True),
        ("::1", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("", False),
        ("example.com", False),
        ("10.1.2.3", False),
    ],
)
def test_loopback_hosts(host, loopback):
    assert is_loopback_host(host) is loopback
