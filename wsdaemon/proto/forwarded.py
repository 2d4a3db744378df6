"""Who the client is behind a reverse proxy: ``Forwarded`` (RFC 7239), ``X-Forwarded-For`` / ``-Proto``.

Those headers are believed only when the socket's peer is one of the trusted
proxies (``--trusted-proxies``); anyone else could write them. Each proxy appends
the address it received the request from, so the list is read from the right:
trusted hops are skipped and the first address that is not a trusted proxy is
the client. A malformed or obfuscated entry (``unknown``, ``_hidden``) ends the
walk at the hop that wrote it: the client is then the last proxy we trust, never
an address nobody vouches for. Nothing here raises on bad input.
"""

from __future__ import annotations

import ipaddress
from typing import NamedTuple

from .http11 import Headers

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

#: Schemes a proxy may report; ``wss`` and ``https`` mean the client's connection was encrypted.
_SECURE = {"https": True, "wss": True, "http": False, "ws": False}


class ForwardedClient(NamedTuple):
    """The client as the trusted proxies report it."""

    address: tuple[str, int]
    #: The scheme the client used (True: https/wss), or None when no proxy said.
    secure: bool | None


class AddressList:
    """Addresses and networks from an option (``10.0.0.0/8, ::1``); IPv4-mapped IPv6 matches IPv4."""

    __slots__ = ("networks",)

    #: The option's name in the error for a bad entry.
    option = "address list"

    def __init__(self, spec: str | list[str]) -> None:
        items = spec.split(",") if isinstance(spec, str) else list(spec)
        networks: list[IpNetwork] = []
        for item in (i.strip() for i in items):
            if not item:
                continue
            try:
                networks.append(ipaddress.ip_network(item, strict=False))
            except ValueError:
                raise ValueError(f"{self.option}: not an address or network: {item!r}") from None
        self.networks = tuple(networks)

    def __bool__(self) -> bool:
        return bool(self.networks)

    def contains(self, address: IpAddress | str | None) -> bool:
        if isinstance(address, str):
            address = parse_ip(address)
        if address is None:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in network for network in self.networks)


class ProxyTrust(AddressList):
    """The ``--trusted-proxies`` list: addresses and networks whose forwarding headers are believed."""

    __slots__ = ()
    option = "trusted_proxies"

    def trusts(self, address: IpAddress | str | None) -> bool:
        return self.contains(address)

    def client(self, peer: tuple, headers: Headers) -> ForwardedClient | None:
        """The client behind ``peer`` if ``peer`` is trusted and says so; None to keep the peer."""
        if not self.networks or not self.trusts(str(peer[0])):
            return None
        forwarded = headers.get_all("Forwarded")
        if forwarded:
            hops = [(_node(e.get("for")), e.get("proto")) for e in parse_forwarded(forwarded)]
        else:
            chain = _split(headers.get_all("X-Forwarded-For"))
            if not chain:
                return None
            protos = _split(headers.get_all("X-Forwarded-Proto"))
            # One scheme per hop when every proxy appended one; otherwise the nearest proxy's.
            hops = [
                (_node(f), protos[i] if len(protos) == len(chain) else (protos[-1] if protos else None))
                for i, f in enumerate(chain)
            ]
        chosen: tuple[tuple[str, int], str | None] | None = None
        for node, proto in reversed(hops):
            if node is None:
                break  # unknown, obfuscated or malformed: nobody vouches for what is left of it
            chosen = (node, proto)
            if not self.trusts(node[0]):
                break
        if chosen is None:
            return None
        address, proto = chosen
        return ForwardedClient(address, _SECURE.get((proto or "").lower()))


def parse_ip(text: str) -> IpAddress | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def parse_forwarded(values: list[str]) -> list[dict[str, str]]:
    """The elements of ``Forwarded`` header values, in order: ``[{"for": ..., "proto": ...}, ...]``.

    RFC 7239 section 4: elements separated by commas, pairs by semicolons,
    values tokens or quoted strings. A malformed pair is skipped.
    """
    elements: list[dict[str, str]] = []
    for value in values:
        for element in _split_outside_quotes(value, ","):
            pairs: dict[str, str] = {}
            for pair in _split_outside_quotes(element, ";"):
                name, eq, raw = pair.partition("=")
                name = name.strip().lower()
                raw = raw.strip()
                if not eq or not name:
                    continue
                if len(raw) >= 2 and raw[0] == raw[-1] == '"':
                    raw = raw[1:-1].replace('\\"', '"').replace("\\\\", "\\")
                pairs.setdefault(name, raw)
            elements.append(pairs)
    return elements


def _split_outside_quotes(text: str, sep: str) -> list[str]:
    parts, current, quoted, escaped = [], [], False, False
    for ch in text:
        if escaped:
            escaped = False
        elif ch == "\\" and quoted:
            escaped = True
        elif ch == '"':
            quoted = not quoted
        elif ch == sep and not quoted:
            parts.append("".join(current))
            current = []
            continue
        current.append(ch)
    parts.append("".join(current))
    return [p for p in (part.strip() for part in parts) if p]


def _split(values: list[str]) -> list[str]:
    return [item.strip() for value in values for item in value.split(",") if item.strip()]


def _node(text: str | None) -> tuple[str, int] | None:
    """``192.0.2.1``, ``192.0.2.1:4711``, ``[2001:db8::1]:4711`` or ``2001:db8::1`` -> (ip, port)."""
    if not text:
        return None
    text = text.strip()
    port = 0
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket:
            return None
        if rest:
            if not rest.startswith(":") or not rest[1:].isdigit():
                return None
            port = int(rest[1:])
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
        if not port_text.isdigit():
            return None
        port = int(port_text)
    else:
        host = text
    address = parse_ip(host)
    if address is None or port > 65535:
        return None
    return str(address), port
