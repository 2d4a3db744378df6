"""The Origin policy: which web pages may open connections to this daemon.

Browsers send the page's origin (``scheme://host[:port]``) with every WebSocket
handshake and cross-origin request; a page on another site must not be able to
talk to the daemon with the user's cookies. The allow-list holds exact origins
(``https://game.example.com``), wildcard subdomains (``https://*.example.com``,
which does not match ``example.com`` itself) and entries without a scheme
(``*.example.com``, ``localhost:8080``) that match any scheme, and ``null``
(sandboxed frames, ``file:`` pages). Nothing is allowed implicitly, not even the
request's own ``Host`` (DNS rebinding forges that): list the origin of every
page that connects, the daemon's own test page included. An empty list allows
every origin.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}
_HOST_RE = re.compile(r"^(\*\.)?([a-z0-9-]+(\.[a-z0-9-]+)*|\[[0-9a-f:.]+\])$")


@dataclass(frozen=True)
class OriginPattern:
    """One allow-list entry: scheme (None: any), host or ``*.`` suffix, port (None: default)."""

    scheme: str | None
    host: str
    wildcard: bool
    port: int | None

    def matches(self, scheme: str, host: str, port: int) -> bool:
        if self.scheme is not None and self.scheme != scheme:
            return False
        wanted_port = self.port if self.port is not None else _DEFAULT_PORTS.get(self.scheme or scheme)
        if wanted_port != port:
            return False
        if self.wildcard:
            return host.endswith("." + self.host)
        return host == self.host


def parse_pattern(text: str) -> OriginPattern:
    """Parse one allow-list entry; raise ValueError for one that could never match."""
    text = text.strip().lower().rstrip("/")
    scheme, sep, rest = text.partition("://")
    if not sep:
        scheme, rest = None, text
    elif scheme not in _DEFAULT_PORTS:
        raise ValueError(f"origin {text!r}: scheme must be http or https")
    host, port = _split_port(rest)
    if host is None or not _HOST_RE.match(host):
        raise ValueError(f"origin {text!r} is not scheme://host[:port] or *.domain")
    wildcard = host.startswith("*.")
    return OriginPattern(scheme, host[2:] if wildcard else host, wildcard, port)


def parse_origin(value: str) -> tuple[str, str, int] | None:
    """``(scheme, host, port)`` of an ``Origin`` header, or None when it is not a valid origin."""
    scheme, sep, rest = value.strip().lower().partition("://")
    if not sep or scheme not in _DEFAULT_PORTS or "/" in rest or "*" in rest:
        return None
    host, port = _split_port(rest)
    if host is None or not _HOST_RE.match(host):
        return None
    return scheme, host, port if port is not None else _DEFAULT_PORTS[scheme]


def _split_port(hostport: str) -> tuple[str | None, int | None]:
    if hostport.startswith("["):
        end = hostport.find("]")
        if end < 0:
            return None, None
        host, rest = hostport[: end + 1], hostport[end + 1 :]
        if rest and not rest.startswith(":"):
            return None, None
        port_text = rest[1:] if rest else ""
    else:
        host, _, port_text = hostport.partition(":")
    if not port_text:
        return host, None
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        return None, None
    return host, int(port_text)


class OriginPolicy:
    """Decides whether a request's ``Origin`` may connect."""

    def __init__(self, allowed: str | list[str] = "", allow_missing: bool = True) -> None:
        entries = allowed.split(",") if isinstance(allowed, str) else list(allowed)
        entries = [e.strip() for e in entries if e.strip()]
        self.allow_null = any(e.lower() == "null" for e in entries)
        self.patterns = [parse_pattern(e) for e in entries if e.lower() != "null"]
        self.allow_missing = allow_missing
        #: True when :meth:`check` passes every request (no list, Origin not required): nothing to read.
        self.allows_any = not self.patterns and not self.allow_null and allow_missing

    @property
    def allow_all(self) -> bool:
        return not self.patterns and not self.allow_null

    def check(self, origin: str | None) -> str | None:
        """None when allowed, else the reason for refusing."""
        if origin is None:
            return None if self.allow_missing else "missing Origin header"
        if self.allow_all:
            return None
        if origin.strip().lower() == "null":
            return None if self.allow_null else "origin not allowed"
        parsed = parse_origin(origin)
        if parsed is None:
            return "malformed Origin header"
        scheme, ohost, oport = parsed
        for pattern in self.patterns:
            if pattern.matches(scheme, ohost, oport):
                return None
        return "origin not allowed"


def request_origin(headers) -> str | None:
    """The ``Origin`` of a request: ``Origin``, or ``Sec-WebSocket-Origin`` (hybi-08..12 clients)."""
    values = headers.get_all("Origin") or headers.get_all("Sec-WebSocket-Origin")
    if not values:
        return None
    if len(values) > 1:
        return "\x00"  # several origins: never valid
    return values[0]


def is_loopback_host(host: str) -> bool:
    """Whether listening on ``host`` only reaches this machine."""
    if host in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
