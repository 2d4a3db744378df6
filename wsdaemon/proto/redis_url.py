"""Where the broker is: ``redis://``, ``rediss://`` and ``unix://`` URLs parsed into a :class:`RedisAddress`.

The forms are redis-py's and Redis's own documentation's:
``redis://[[user]:password@]host[:port][/db]``, ``rediss://`` for TLS,
``unix://[[user]:password@]/path/to/redis.sock[?db=N]`` (or a bare absolute path).
Percent-escapes in the user and password are decoded. A ``rediss://`` URL may
name the CA bundle that signed the server's certificate, as redis-py does:
``?ssl_ca_certs=/path/ca.pem`` (otherwise the system's CAs are trusted).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qs, unquote, urlsplit

DEFAULT_PORT = 6379


class RedisUrlError(ValueError):
    """The broker URL cannot be used; the message says which part is wrong."""


@dataclass(frozen=True)
class RedisAddress:
    host: str = ""
    port: int = DEFAULT_PORT
    unix_path: str = ""
    tls: bool = False
    username: str = ""
    password: str = ""
    db: int = 0
    ca_file: str = ""

    def __str__(self) -> str:
        """The address without credentials, for log lines."""
        if self.unix_path:
            return f"unix://{self.unix_path}?db={self.db}"
        scheme = "rediss" if self.tls else "redis"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self.port}/{self.db}"


def _db(text: str) -> int:
    try:
        db = int(text)
    except ValueError:
        raise RedisUrlError(f"the database must be a number, not {text!r}") from None
    if db < 0:
        raise RedisUrlError(f"the database must be 0 or more, not {db}")
    return db


def parse_redis_url(url: str) -> RedisAddress:
    """Parse ``url``; raises :class:`RedisUrlError` naming what is wrong."""
    url = url.strip()
    if url.startswith("/"):
        url = "unix://" + url
    parts = urlsplit(url)
    username = unquote(parts.username or "")
    password = unquote(parts.password or "")
    query = parse_qs(parts.query)
    if parts.scheme == "unix":
        if not parts.path:
            raise RedisUrlError(f"{url!r} names no socket path")
        db = _db(query["db"][-1]) if "db" in query else 0
        return RedisAddress(unix_path=parts.path, username=username, password=password, db=db)
    if parts.scheme not in ("redis", "rediss"):
        raise RedisUrlError(f"{url!r}: the scheme must be redis://, rediss:// or unix://")
    if not parts.hostname:
        raise RedisUrlError(f"{url!r} names no host")
    try:
        port = parts.port or DEFAULT_PORT
    except ValueError:
        raise RedisUrlError(f"{url!r}: the port must be a number from 1 to 65535") from None
    path = parts.path.strip("/")
    db = _db(path) if path else (_db(query["db"][-1]) if "db" in query else 0)
    ca_file = query["ssl_ca_certs"][-1] if "ssl_ca_certs" in query else ""
    if ca_file and parts.scheme != "rediss":
        raise RedisUrlError(f"{url!r}: ssl_ca_certs is for rediss:// URLs")
    return RedisAddress(
        host=parts.hostname,
        ca_file=ca_file,
        port=port,
        tls=parts.scheme == "rediss",
        username=username,
        password=password,
        db=db,
    )
