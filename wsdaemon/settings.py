"""Settings of one daemon: every option, declared once.

Each field of :class:`Settings` is a CLI option (``--max-message-size``), a
``WSDAEMON_MAX_MESSAGE_SIZE`` environment variable and a ``max_message_size``
key of the config file (see :mod:`wsdaemon.settings_loader`). Add an option by
adding a field with ``option(...)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any


def option(
    default: Any,
    help: str,
    choices: tuple[str, ...] | None = None,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    restart: bool = False,
    path: bool = False,
    unit: str | None = None,
) -> Any:
    """Declare one setting.

    Numbers are checked against ``minimum`` (0 unless given) and ``maximum``.
    ``restart``: SIGHUP cannot apply a new value (the server keeps the old one
    and logs that a restart is needed). ``path``: a file name, made absolute
    (relative to the config file when it comes from one). ``unit``: ``"bytes"``
    (written ``256k``, ``8M``, ``1G``; k=1024) or ``"seconds"`` (``500ms``, ``30s``, ``2m``);
    plain numbers keep meaning bytes and seconds.
    """
    if minimum is None and isinstance(default, (int, float)) and not isinstance(default, bool):
        minimum = 0
    metadata = {
        "help": help,
        "choices": choices,
        "minimum": minimum,
        "maximum": maximum,
        "restart": restart,
        "path": path,
        "unit": unit,
    }
    return field(default=default, metadata=metadata)


@dataclass
class Settings:
    # -- listening and application --
    host: str = option("0.0.0.0", "Address to listen on (IPv4, IPv6 or a name).", restart=True)
    port: int = option(
        8081, "TCP port for browsers: WebSocket, long-polling and HTTP.", maximum=65535, restart=True
    )
    app: str = option("wsdaemon.apps.demo:app", "Application to serve, as module:attribute.", restart=True)
    app_dir: str = option(
        "",
        "Directory put first on the import path for --app and the workers (empty: the directory "
        "the command runs in), like gunicorn's --chdir and uvicorn's --app-dir.",
        restart=True,
        path=True,
    )
    static: bool = option(True, "Serve the test page at / and the client at /wsdaemon.js.", restart=True)
    backlog: int = option(1024, "Listen backlog.", restart=True)
    log_level: str = option("info", "Log level.", ("debug", "info", "warning", "error"))
    log_format: str = option(
        "plain", "Log line format: plain text, or one JSON object per line.", ("plain", "json"), restart=True
    )
    log_connections: bool = option(
        False, "Log each connection's open and close at INFO (rate-limited by log_connections_rate)."
    )
    log_connections_rate: int = option(
        100, "At most this many open/close lines a second; the rest are counted in one line.", minimum=1
    )
    log_summary_interval: float = option(
        60.0,
        "Log one INFO line of connections opened, closed and open every this many seconds, when any "
        "changed (0: never); each connection's own open and close lines are at DEBUG.",
        unit="seconds",
    )
    # -- RFC 6455 --
    max_message_size: int = option(
        16 * 1024 * 1024, "Largest message in bytes; bigger ones close with 1009.", unit="bytes"
    )
    ping_interval: float = option(20.0, "Ping a client idle this many seconds (0: never).", unit="seconds")
    ping_timeout: float = option(
        20.0, "Drop a client that has not answered a ping within this many seconds.", unit="seconds"
    )
    close_timeout: float = option(
        5.0, "Seconds to wait for the client's close frame after ours.", unit="seconds"
    )
    # -- permessage-deflate (RFC 7692, docs/compression.md); read when a connection opens --
    compression: str = option(
        "on",
        "Negotiate permessage-deflate with RFC 6455 clients that offer it (hixie and long-polling "
        "never compress).",
        ("on", "off"),
    )
    compression_context_takeover: str = option(
        "off",
        "on: keep zlib history between messages both ways (smaller small messages, a compressor and "
        "a decompressor held per connection). off: answer server_no_context_takeover and "
        "client_no_context_takeover, so no zlib state outlives a message and a broadcast is "
        "compressed once for all (docs/compression.md).",
        ("on", "off"),
    )
    compression_min_size: int = option(
        64,
        "Send messages shorter than this uncompressed: below it deflate saves nothing (measured in "
        "docs/compression.md).",
        unit="bytes",
    )
    compression_window_bits: int = option(
        12,
        "Window of our compressor, 8..15 (server_max_window_bits); also the window asked of clients "
        "that allow it. 12: 4 KiB of history, a 38 KiB compressor instead of 262 KiB at 15.",
        minimum=8,
        maximum=15,
    )
    compression_mem_level: int = option(
        5, "zlib memLevel of our compressor, 1..9: its hash table is 2^(level+9) bytes.", minimum=1, maximum=9
    )
    # -- limits --
    max_write_buffer: int = option(
        8 * 1024 * 1024,
        "Outbound bytes one connection may have queued behind the message being sent; "
        "over it the client is a slow consumer and is closed with 1008 (0: no limit).",
        unit="bytes",
    )
    max_header_bytes: int = option(
        16384, "Largest request line plus headers, in bytes (431 above).", unit="bytes"
    )
    max_headers: int = option(100, "Most request headers (431 above).")
    handshake_timeout: float = option(
        10.0, "Seconds a new connection has to send its complete request head.", unit="seconds"
    )
    # -- shutdown --
    shutdown_grace: float = option(
        5.0, "Seconds clients get to finish their closing handshake at shutdown.", unit="seconds"
    )
    # -- hixie-76 / hixie-75 (no ping in these drafts) --
    idle_timeout: float = option(
        300.0,
        "Close a connection that has sent nothing for this many seconds (0: never). "
        "RFC 6455 connections are pinged instead while --ping-interval is set.",
        unit="seconds",
    )
    processes: int = option(
        1,
        "Serving processes under one supervising parent on the one port (1: no parent); above 1 "
        "needs --broker for rooms across them (docs/scaling.md, Processes).",
        minimum=1,
        restart=True,
    )
    # -- workers: task functions run in worker processes (docs/workers.md) --
    workers: int = option(
        0, "Worker processes to start for the application's task functions.", minimum=0, restart=True
    )
    worker_socket: str = option(
        "",
        "Unix socket the workers connect to (default: in a private temporary directory).",
        restart=True,
        path=True,
    )
    worker_listen: str = option(
        "",
        "HOST:PORT of a TCP listener for remote workers (off when empty; needs a token file).",
        restart=True,
    )
    worker_token_file: str = option(
        "", "File holding the shared secret that remote workers must present.", restart=True, path=True
    )
    worker_max_inflight: int = option(1, "Tasks sent to one worker before it has answered.", minimum=1)
    task_queue_size: int = option(
        1000, "Tasks waiting for a free worker; a submission beyond it fails at once.", minimum=0
    )
    task_timeout: float = option(
        60.0,
        "Seconds a task may run (unless it declares its own; 0: no limit); then its worker is replaced.",
        unit="seconds",
    )
    task_queue_timeout: float = option(
        60.0,
        "Seconds a task may wait in the queue for a free worker before it fails (0: no limit).",
        unit="seconds",
    )
    task_max_size: int = option(
        16 * 1024 * 1024,
        "Largest task or result message in bytes (JSON).",
        minimum=1,
        restart=True,
        unit="bytes",
    )
    # -- daemon operations (start/stop/status, signals, logging) --
    pidfile: str = option(
        "",
        "Pid file. run: none when empty. start/stop/restart/reload/status, when empty: one per "
        "config file (wsdaemon-NAME-HASH.pid, from the file's path, so editing the port in it "
        "keeps the daemon found), else per port (wsdaemon-PORT.pid); in /run as root, else in "
        "the temporary directory.",
        restart=True,
        path=True,
    )
    logfile: str = option(
        "",
        "Log file (empty: stderr for run; discarded for start). SIGUSR1 reopens it (logrotate).",
        path=True,
    )
    # -- long-polling (docs/long-polling.md) --
    longpoll: bool = option(True, "Serve the long-polling transport under /lp/.", restart=True)
    longpoll_hold: float = option(
        25.0, "Seconds a poll is held open when nothing is queued for its session.", unit="seconds"
    )
    longpoll_expire: float = option(
        30.0,
        "Seconds a session may go without a poll before it expires (on_close 1006).",
        unit="seconds",
    )
    longpoll_max_body: int = option(
        1024 * 1024, "Largest long-polling request body in bytes (413 above).", unit="bytes"
    )
    longpoll_max_queue: int = option(
        8 * 1024 * 1024,
        "Unacknowledged outbound bytes one session may have queued before it is closed with 1008.",
        unit="bytes",
    )
    longpoll_max_sessions: int = option(10000, "Most long-polling sessions at once (503 above).")
    # -- resumable sessions of the JS client (docs/sessions.md) --
    resume_window: float = option(
        30.0,
        "Seconds a session whose transport dropped waits for its client to resume it; past it, "
        "on_close 1006.",
        unit="seconds",
    )
    resume_buffer: int = option(
        1024 * 1024,
        "Unacknowledged bytes a session keeps for a resume; over it the session ends with on_close 1008.",
        unit="bytes",
    )
    # -- hardening: connection limits, Origin policy, TLS (docs/security.md) --
    max_connections: int = option(
        10000, "Most client connections at once, handshakes included (503 above; 0: no limit)."
    )
    max_connects_per_second: float = option(
        20.0,
        "New connections a second one client address may open (an IPv6 /64 counts as one), as a "
        "token bucket of max_connects_burst; over it 503 with Retry-After: 1 at accept, before the "
        "request is read. Addresses in trusted_proxies are exempt (0: no limit).",
    )
    max_connects_burst: int = option(
        40,
        "Connections one client address may open at once before max_connects_per_second applies.",
        minimum=1,
    )
    max_frames_per_message: int = option(
        100000, "Most frames in one fragmented RFC 6455 message (1009 above)."
    )
    read_budget: int = option(
        16384,
        "Bytes of RFC 6455 frames parsed for one connection per loop turn; the rest waits for the "
        "next turn and that socket is not read meanwhile, so a flooding client cannot hold up the "
        "others (0: no limit).",
        unit="bytes",
        minimum=0,
    )
    drop_grace: float = option(
        1.0,
        "Seconds a connection closed for a policy reason (slow consumer, rate limit, protocol "
        "error) keeps its socket while its close frame leaves; it is not read meanwhile, then TCP "
        "is dropped.",
        unit="seconds",
    )
    max_control_frames_per_second: int = option(
        100, "Pings and pongs one RFC 6455 client may send per second (1008 above; 0: no limit).", minimum=0
    )
    max_messages_per_second: int = option(
        0, "Messages one client may send per second (0: no limit); see --rate-limit-action.", minimum=0
    )
    rate_limit_action: str = option(
        "close",
        "Over --max-messages-per-second: close the connection with 1008, or drop the excess "
        "messages (counted in /status and /metrics).",
        ("close", "drop"),
    )
    allowed_origins: str = option(
        "",
        "Comma-separated Origins allowed to connect, like https://example.com or "
        "https://*.example.com (403 otherwise; empty: allow all).",
    )
    allow_missing_origin: bool = option(
        True, "Accept handshakes without an Origin header (non-browser clients)."
    )
    metrics_listen: str = option(
        "",
        "HOST:PORT of a second listener serving only /metrics (Prometheus) and /status, to anyone "
        "who can reach it (empty: none).",
        restart=True,
    )
    metrics_allow: str = option(
        "127.0.0.0/8,::1",
        "Addresses or networks that may read /metrics and /status on the public port "
        "(empty: nobody; the metrics listener serves everyone).",
    )
    trusted_proxies: str = option(
        "",
        "Comma-separated addresses or networks (127.0.0.1, 10.0.0.0/8, ::1) of reverse proxies "
        "whose Forwarded / X-Forwarded-For / X-Forwarded-Proto headers are believed "
        "(empty: nobody's).",
    )
    # -- broker: rooms, broadcast and presence across daemons (docs/scaling.md) --
    broker: str = option(
        "",
        "Redis (or Valkey) pub/sub that joins this daemon to others: redis://[user:password@]host:port/db, "
        "rediss://... (TLS) or unix:///path/redis.sock?db=N (empty: this daemon alone).",
        restart=True,
    )
    broker_prefix: str = option(
        "wsdaemon", "Prefix of every Redis channel and key this cluster of daemons uses.", restart=True
    )
    broker_buffer: int = option(
        4 * 1024 * 1024,
        "Bytes of commands held for Redis while it is away or slow; publications past it are dropped "
        "and counted.",
        minimum=65536,
        unit="bytes",
    )
    broker_presence_ttl: float = option(
        10.0,
        "A node's members drop out of presence this long after its last heartbeat (it beats every "
        "third of it).",
        minimum=0.5,
        unit="seconds",
        restart=True,
    )
    certfile: str = option(
        "",
        "PEM certificate chain: serve wss:// and https:// (TLS); SIGHUP reads it again.",
        path=True,
    )
    keyfile: str = option(
        "", "PEM private key for the certfile (empty: the key is in the certfile).", path=True
    )
    tls_port: int = option(
        0,
        "With a certfile: a second port, for TLS only, beside the plain one (0: the main port is TLS).",
        maximum=65535,
        restart=True,
    )
    # -- performance --
    malloc_tuning: bool = option(
        True,
        "Keep message-sized buffers in glibc's heap (mallopt) instead of mapping fresh pages per message.",
        restart=True,
    )
    memory_trim: bool = option(
        True,
        "When the connections held fall to half of a peak of 1000 or more, hand freed memory back "
        "to the system (gc.collect, glibc malloc_trim; at most once every 5 s).",
    )


def setting_fields() -> list:
    """The declared options, in declaration order."""
    return list(fields(Settings))
