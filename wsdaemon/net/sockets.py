"""Socket helpers shared by the listeners, the worker link and the service: bind, name, limits."""

from __future__ import annotations

import logging
import resource
import socket
from typing import Any

log = logging.getLogger("wsdaemon.server")


def check_descriptor_limit(needed: int) -> int:
    """Raise the soft RLIMIT_NOFILE towards ``needed`` (up to the hard limit); warn if it stays short."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (OSError, ValueError) as exc:
            log.debug("cannot raise the descriptor limit: %s", exc)
        if soft < needed:
            log.warning(
                "descriptor limit %d is below the %d that max_connections needs: clients past it wait "
                "(raise ulimit -n or LimitNOFILE, or lower --max-connections)",
                soft,
                needed,
            )
    return soft


def bind_socket(host: str, port: int, backlog: int = 1024) -> socket.socket:
    """A listening TCP socket; ``host`` may be IPv4, IPv6 or a name."""
    infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, socktype, proto, _, address = infos[0]
    sock = socket.socket(family, socktype, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind(address)
        sock.listen(backlog)
    except OSError:
        sock.close()
        raise
    return sock


def format_address(address: Any) -> str:
    if isinstance(address, tuple) and len(address) >= 2:
        host = address[0]
        return f"[{host}]:{address[1]}" if ":" in str(host) else f"{host}:{address[1]}"
    return str(address) or "unix"
