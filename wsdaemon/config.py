"""Settings of one daemon: every option, declared once.

Each field of :class:`Settings` is a CLI option (``--max-message-size``) and,
through the daemon-operations layer, a config-file key and a ``WSDAEMON_*``
environment variable. Add an option by adding a field with ``option(...)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any


def option(default: Any, help: str, choices: tuple[str, ...] | None = None) -> Any:
    return field(default=default, metadata={"help": help, "choices": choices})


@dataclass
class Settings:
    # -- listening and application --
    host: str = option("0.0.0.0", "Address to listen on (IPv4, IPv6 or a name).")
    port: int = option(8081, "TCP port for browsers: WebSocket, long-polling and HTTP.")
    app: str = option("wsdaemon.apps.demo:app", "Application to serve, as module:attribute.")
    static: bool = option(True, "Serve the test page at / and the client at /wsdaemon.js.")
    backlog: int = option(1024, "Listen backlog.")
    log_level: str = option("info", "Log level.", ("debug", "info", "warning", "error"))
    # -- RFC 6455 --
    max_message_size: int = option(16 * 1024 * 1024, "Largest message in bytes; bigger ones close with 1009.")
    ping_interval: float = option(20.0, "Ping a client idle this many seconds (0: never).")
    ping_timeout: float = option(20.0, "Drop a client that has not answered a ping within this many seconds.")
    close_timeout: float = option(5.0, "Seconds to wait for the client's close frame after ours.")
    # -- limits --
    max_write_buffer: int = option(
        8 * 1024 * 1024,
        "Outbound bytes one connection may have queued behind the message being sent; "
        "over it the client is a slow consumer and is closed with 1008 (0: no limit).",
    )
    max_header_bytes: int = option(16384, "Largest request line plus headers, in bytes (431 above).")
    max_headers: int = option(100, "Most request headers (431 above).")
    handshake_timeout: float = option(10.0, "Seconds a new connection has to send its complete request head.")
    # -- shutdown --
    shutdown_grace: float = option(5.0, "Seconds clients get to finish their closing handshake at shutdown.")
    # -- hixie-76 / hixie-75 (no ping in these drafts) --
    idle_timeout: float = option(
        300.0,
        "Close a connection that has sent nothing for this many seconds (0: never). "
        "RFC 6455 connections are pinged instead while --ping-interval is set.",
    )
    # -- workers: task functions run in worker processes (docs/workers.md) --
    workers: int = option(0, "Worker processes to start for the application's task functions.")
    worker_socket: str = option(
        "", "Unix socket the workers connect to (default: in a private temporary directory)."
    )
    worker_listen: str = option(
        "", "HOST:PORT of a TCP listener for remote workers (off when empty; needs a token file)."
    )
    worker_token_file: str = option("", "File holding the shared secret that remote workers must present.")
    worker_max_inflight: int = option(1, "Tasks sent to one worker before it has answered.")
    task_queue_size: int = option(
        1000, "Tasks waiting for a free worker; a submission beyond it fails at once."
    )
    task_timeout: float = option(
        60.0, "Seconds a task may run (unless it declares its own); then its worker is replaced."
    )
    task_queue_timeout: float = option(
        60.0, "Seconds a task may wait in the queue for a free worker before it fails."
    )
    task_max_size: int = option(16 * 1024 * 1024, "Largest task or result message in bytes (JSON).")
    # -- hardening: connection limits, Origin policy, TLS (docs/security.md) --
    max_connections: int = option(
        10000, "Most client connections at once, handshakes included (503 above; 0: no limit)."
    )
    max_frames_per_message: int = option(
        100000, "Most frames in one fragmented RFC 6455 message (1009 above)."
    )
    allowed_origins: str = option(
        "",
        "Comma-separated Origins allowed to connect, like https://example.com or "
        "https://*.example.com (403 otherwise; empty: allow all).",
    )
    allow_missing_origin: bool = option(
        True, "Accept handshakes without an Origin header (non-browser clients)."
    )
    certfile: str = option("", "PEM certificate chain: serve wss:// and https:// (TLS).")
    keyfile: str = option("", "PEM private key for --certfile (default: inside the certfile).")
    tls_port: int = option(
        0, "With --certfile: a second port for TLS, the main one stays plain (0: the main port is TLS)."
    )


def setting_fields() -> list:
    """The declared options, in declaration order."""
    return list(fields(Settings))
