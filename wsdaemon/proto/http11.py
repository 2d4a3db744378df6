"""Incremental HTTP/1.1 request parsing and response building, without I/O.

The parser reads CRLF-terminated lines up to the blank line and stops there:
every byte after the headers (a hixie-76 key3, a request body, the first
WebSocket frame) stays in the buffer for the next layer.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from http.cookies import CookieError, SimpleCookie
from typing import Any

from .accel import speedups
from .errors import ProtocolError

_TOKEN_RE = re.compile(rb"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_REQUEST_LINE_RE = re.compile(rb"^([!#$%&'*+\-.^_`|~0-9A-Za-z]+) (\S+) HTTP/(\d)\.(\d)$")
# The target is visible ASCII only (RFC 9112 3.2): no control characters, no spaces.
_BAD_TARGET_RE = re.compile(rb"[^\x21-\x7e]")
_CTL_RE = re.compile(r"[\x00-\x1f\x7f]")
# A field value is visible characters, spaces and tabs (RFC 9110 5.5): any other control is refused.
_BAD_VALUE_RE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
# A whole head that passes every check below at once (HTTP/1.x, a visible ASCII target, token names,
# values without controls): it is parsed without a check per line. Any other head takes the line by
# line path, which says what is wrong.
_GOOD_HEAD_RE = re.compile(
    rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+ [\x21-\x7e]+ HTTP/1\.\d"
    rb"(?:\r\n[!#$%&'*+\-.^_`|~0-9A-Za-z]+:[\t\x20-\x7e\x80-\xff]*)*"
)

DEFAULT_MAX_HEADER_BYTES = 16384
DEFAULT_MAX_HEADERS = 100


#: Headers whose values are alike across clients (one browser's User-Agent, the Host, the upgrade's
#: fixed tokens): a compacted request shares one string per value with every other (bounded).
_SHAREABLE = frozenset(
    {
        "host",
        "upgrade",
        "connection",
        "origin",
        "user-agent",
        "accept-encoding",
        "accept-language",
        "cache-control",
        "pragma",
        "sec-websocket-version",
        "sec-websocket-extensions",
    }
)
_SHARED_VALUES: dict[str, str] = {}
_SHARED_MAX = 1024


#: Lower-case forms of the names in ``_NAMES`` (filled by the C head split).
_LOWER_NAMES: dict[str, str] = {}


def _compact_python(
    items: list[tuple[str, str]], lowers: dict, shareable: frozenset, shared: dict, shared_max: int
) -> tuple[tuple[str, str], ...]:
    """The items as a tuple, values of ``shareable`` names replaced by the equal string of ``shared``."""
    out = []
    for name, value in items:
        if name.lower() in shareable and len(value) <= 256:
            found = shared.get(value)
            if found:
                value = found
            elif len(shared) < shared_max:
                shared[value] = value
        out.append((name, value))
    return tuple(out)


_compact_items = speedups.compact_items if speedups is not None else _compact_python


class _LazyIndex:
    """The lower-case name -> values index of compacted :class:`Headers`, built on first use."""

    __slots__ = ("_items", "_built")

    def __init__(self, items: Iterable[tuple[str, str]]) -> None:
        self._items = items
        self._built: dict[str, list[str]] | None = None

    def index(self) -> dict[str, list[str]]:
        if self._built is None:
            built: dict[str, list[str]] = {}
            for name, value in self._items:
                built.setdefault(name.lower(), []).append(value)
            self._built = built
        return self._built

    def get(self, key: str, default: Any = None) -> Any:
        return self.index().get(key, default)

    def __contains__(self, key: object) -> bool:
        return key in self.index()


class Headers:
    """Case-insensitive multi-valued header map that keeps the order of arrival."""

    __slots__ = ("_items", "_index")

    def __init__(self, items: list[tuple[str, str]] | None = None) -> None:
        self._items: list[tuple[str, str]] | tuple[tuple[str, str], ...] = []
        self._index: dict[str, list[str]] | _LazyIndex = {}
        for name, value in items or ():
            self.add(name, value)

    def add(self, name: str, value: str) -> None:
        if type(self._index) is not dict:  # compacted: back to the lookup form
            self._items = list(self._items)
            self._index = self._index.index()
        self._items.append((name, value))  # type: ignore[union-attr]
        self._index.setdefault(name.lower(), []).append(value)  # type: ignore[union-attr]

    def compact(self) -> None:
        """Keep the items only, in a tuple; the index is built again if a lookup comes.

        An open connection keeps its handshake's request for the application, which rarely
        looks at a header again: the index (a dict, a list per name, the lower-case names)
        was most of what every idle connection held.
        """
        if type(self._index) is not dict:
            return
        self._items = _compact_items(self._items, _LOWER_NAMES, _SHAREABLE, _SHARED_VALUES, _SHARED_MAX)
        self._index = _LazyIndex(self._items)

    def get(self, name: str, default: str | None = None) -> str | None:
        """The value of ``name``; repeated headers are joined with ``, `` as RFC 9110 allows."""
        return joined(self._index.get(name.lower()), default)

    def get_all(self, name: str) -> list[str]:
        return list(self._index.get(name.lower(), ()))

    def tokens(self, name: str) -> list[str]:
        """A comma-separated token list header, lower-cased (``Connection``, ``Upgrade``)."""
        return [t.lower() for t in self.tokens_raw(name)]

    def has_token(self, name: str, token: str) -> bool:
        """``token in self.tokens(name)`` without building the list; ``token`` is lower-case."""
        return has_token(self._index.get(name.lower(), ()), token)

    def index(self) -> dict[str, list[str]]:
        """Lower-case name -> values, for lookups by names already in lower case."""
        index = self._index
        return index if type(index) is dict else index.index()

    def tokens_raw(self, name: str) -> list[str]:
        """A comma-separated list header with its case kept (``Sec-WebSocket-Protocol``)."""
        out = []
        for value in self._index.get(name.lower(), ()):
            out.extend(t.strip() for t in value.split(",") if t.strip())
        return out

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._index

    def __getitem__(self, name: str) -> str:
        value = self.get(name)
        if value is None:
            raise KeyError(name)
        return value

    def items(self) -> list[tuple[str, str]]:
        return list(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"Headers({self._items!r})"


def has_token(values: Iterable[str], token: str) -> bool:
    """Whether the lower-case ``token`` is in one of the comma-separated lists ``values``."""
    for value in values:
        value = value.lower()
        if value == token or (token in value and any(t.strip() == token for t in value.split(","))):
            return True
    return False


def joined(values: list[str] | None, default: str | None = None) -> str | None:
    """What :meth:`Headers.get` gives for a name with ``values`` (None: absent)."""
    if not values:
        return default
    return values[0] if len(values) == 1 else ", ".join(values)


class QueryParams(Mapping[str, str]):
    """The query string as a read-only mapping: ``q["k"]`` and ``q.get("k")`` give one string.

    A key given several times maps to its last value; :meth:`getall` lists them all
    in order (as Starlette's and Werkzeug's query mappings do).
    """

    __slots__ = ("_items", "_last")

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        self._items = list(items)
        self._last = dict(self._items)

    @classmethod
    def parse(cls, query_string: str) -> QueryParams:
        return cls(urllib.parse.parse_qsl(query_string, keep_blank_values=True))

    def __getitem__(self, key: str) -> str:
        return self._last[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._last)

    def __len__(self) -> int:
        return len(self._last)

    def getall(self, key: str) -> list[str]:
        """Every value of ``key``, in the order given; ``[]`` when absent."""
        return [v for k, v in self._items if k == key]

    getlist = getall

    def multi_items(self) -> list[tuple[str, str]]:
        """Every (key, value) pair, repeats included, in order."""
        return list(self._items)

    def __repr__(self) -> str:
        return f"QueryParams({self._items!r})"


@dataclass(slots=True)
class Request:
    """A parsed request head: what ``conn.request`` shows the application."""

    method: str
    target: str
    version: str
    headers: Headers
    remote_address: tuple = ("", 0)
    path: str = "/"
    query_string: str = ""
    query: QueryParams = field(default_factory=QueryParams)
    cookies: dict[str, str] = field(default_factory=dict)
    secure: bool = False
    #: The socket's peer when a trusted proxy forwarded the request (``remote_address`` is then the client).
    peer_address: tuple | None = None
    #: The loop's clock when the head was complete (a connection's duration starts there).
    received_at: float = 0.0

    @property
    def host(self) -> str | None:
        return self.headers.get("Host")

    @property
    def keep_alive(self) -> bool:
        tokens = self.headers.tokens("Connection")
        if self.version == "1.0":
            return "keep-alive" in tokens
        return "close" not in tokens


class HttpRequestParser:
    """Feed bytes; get a :class:`Request` once the head is complete.

    ``feed`` returns ``None`` while the head is incomplete and raises
    :class:`ProtocolError` (with an HTTP status) on malformed or oversized
    input. After a request, ``buffer`` holds the unconsumed bytes and
    ``last_head`` the head's own bytes (without the blank line), which a
    handover to another process sends on.
    """

    __slots__ = ("buffer", "max_header_bytes", "max_headers", "_scanned", "last_head")

    def __init__(
        self,
        max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES,
        max_headers: int = DEFAULT_MAX_HEADERS,
    ) -> None:
        self.buffer = bytearray()
        self.max_header_bytes = max_header_bytes
        self.max_headers = max_headers
        self._scanned = 0
        self.last_head = b""

    def feed(self, data: bytes = b"") -> Request | None:
        if data:
            self.buffer += data
        buf = self.buffer
        # Tolerate blank lines before a request line (RFC 9112 section 2.2).
        while buf[:2] == b"\r\n":
            del buf[:2]
        end = buf.find(b"\r\n\r\n", max(0, self._scanned - 3))
        if end < 0:
            self._scanned = len(buf)
            if len(buf) > self.max_header_bytes:
                raise ProtocolError("request header too large", status=431)
            return None
        if end + 4 > self.max_header_bytes:
            raise ProtocolError("request header too large", status=431)
        head = self.last_head = bytes(buf[:end])
        del buf[: end + 4]
        self._scanned = 0
        return parse_request_head(head, self.max_headers)


_NO_QUERY = QueryParams()


#: Header names seen so far, so that every request shares one string per name (bounded: a client
#: that makes up names only fills it).
_NAMES: dict[str, str] = {}
_NAMES_MAX = 512


def _split_head(head: bytes, names: dict, lowers: dict, names_max: int, max_headers: int) -> tuple | None:
    """(method, target, version, items, index) of a plain head, None for any other (the checked parse).

    What ``_speedups.parse_head`` does in C; ``lowers`` is its cache of lower-case names.
    """
    if _GOOD_HEAD_RE.fullmatch(head) is None or head.count(b"\r\n") > max_headers:
        return None
    lines = head.decode("latin-1").split("\r\n")
    method, target, version = lines[0].split(" ")
    items = []
    index: dict[str, list[str]] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        value = value.strip(" \t")
        shared = names.get(name)
        if shared is not None:
            name = shared
        elif len(names) < names_max:
            names[name] = name
        items.append((name, value))
        key = name.lower()
        values = index.get(key)
        if values is None:
            index[key] = [value]
        else:
            values.append(value)
    return method, target, version[5:], items, index


_split = speedups.parse_head if speedups is not None else _split_head


def parse_request_head(head: bytes, max_headers: int = DEFAULT_MAX_HEADERS) -> Request:
    """Parse a request line and headers (without the final blank line)."""
    parts = _split(head, _NAMES, _LOWER_NAMES, _NAMES_MAX, max_headers)
    if parts is None:
        return _parse_checked(head, max_headers)
    method, target, version, items, index = parts
    headers = Headers.__new__(Headers)
    headers._items = items
    headers._index = index
    path, _, query_string = target.partition("?")
    if not path.startswith("/"):
        return _parse_checked(head, max_headers)  # absolute-form
    return Request(
        method,
        target,
        version,
        headers,
        ("", 0),
        urllib.parse.unquote(path) if "%" in path else path,
        query_string,
        QueryParams.parse(query_string) if query_string else _NO_QUERY,
        _parse_cookies(index["cookie"]) if "cookie" in index else {},
    )


def _parse_checked(head: bytes, max_headers: int) -> Request:
    """The line by line parse, with a precise error for whatever is wrong."""
    lines = head.split(b"\r\n")
    match = _REQUEST_LINE_RE.match(lines[0])
    if not match:
        raise ProtocolError("malformed request line", status=400)
    method, target, major, minor = match.groups()
    if _BAD_TARGET_RE.search(target):
        raise ProtocolError("control or non-ASCII character in request target", status=400)
    if major != b"1":
        raise ProtocolError("unsupported HTTP version", status=505)
    if len(lines) - 1 > max_headers:
        raise ProtocolError("too many request headers", status=431)
    headers = Headers()
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep or not _TOKEN_RE.match(name):
            raise ProtocolError("malformed header line", status=400)
        value = value.strip(b" \t")
        if _BAD_VALUE_RE.search(value):
            raise ProtocolError(f"control character in {name.decode('ascii')} header", status=400)
        headers.add(name.decode("ascii"), value.decode("latin-1"))
    try:
        target_str = target.decode("ascii")
    except UnicodeDecodeError:
        raise ProtocolError("non-ASCII request target", status=400) from None
    request = Request(method.decode("ascii"), target_str, f"{major.decode()}.{minor.decode()}", headers)
    path, _, query_string = target_str.partition("?")
    if not path.startswith("/"):
        # absolute-form (proxies) -> keep only the path
        try:
            parsed = urllib.parse.urlsplit(target_str)
        except ValueError:  # "http://[::1" and the like
            raise ProtocolError("malformed request target", status=400) from None
        path, query_string = parsed.path or "/", parsed.query
    request.path = urllib.parse.unquote(path)
    request.query_string = query_string
    request.query = QueryParams.parse(query_string)
    request.cookies = _parse_cookies(headers.get_all("Cookie"))
    return request


def _parse_cookies(values: list[str]) -> dict[str, str]:
    cookies: dict[str, str] = {}
    for value in values:
        jar = SimpleCookie()
        try:
            jar.load(value)
        except CookieError:
            continue
        cookies.update({k: m.value for k, m in jar.items()})
    return cookies


def is_safe_header_value(value: str) -> bool:
    """True when ``value`` can be written into a response header verbatim."""
    return not _CTL_RE.search(value.replace("\t", " "))


def is_token(value: str) -> bool:
    return bool(value) and bool(_TOKEN_RE.match(value.encode("latin-1", "replace")))


def build_response(
    status: int,
    headers: list[tuple[str, str]] | None = None,
    body: bytes = b"",
    *,
    reason: str | None = None,
    content_length: bool = True,
) -> bytes:
    """Serialize a complete HTTP/1.1 response head (plus ``body``)."""
    if reason is None:
        try:
            reason = HTTPStatus(status).phrase
        except ValueError:
            reason = "Unknown"
    lines = [f"HTTP/1.1 {status} {reason}"]
    for name, value in headers or ():
        if not is_token(name):
            raise ValueError(f"header name {name!r} is not a token")
        if not is_safe_header_value(value):
            raise ValueError(f"unsafe header value for {name}")
        lines.append(f"{name}: {value}")
    if content_length:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def error_response(
    status: int, message: str, extra: list[tuple[str, str]] | None = None, phrase: str | None = None
) -> bytes:
    """A small plain-text error response that closes the connection (``phrase``: the status line's)."""
    headers = [
        ("Content-Type", "text/plain; charset=utf-8"),
        ("X-Content-Type-Options", "nosniff"),
        ("Connection", "close"),
    ]
    headers.extend(extra or ())
    return build_response(status, headers, (message + "\n").encode("utf-8"), reason=phrase)


def reason_phrase(text: str, limit: int = 123) -> str:
    """``text`` made safe for a status line's reason phrase: printable latin-1, one line, bounded."""
    safe = "".join(c if (" " <= c <= "~" or "\xa0" <= c <= "\xff") else "?" for c in text[:limit])
    return safe.strip() or "Rejected"
