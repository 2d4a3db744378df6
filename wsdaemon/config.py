"""Settings of one daemon: every option the CLI (and later the config file) can set."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Settings:
    host: str = "0.0.0.0"
    port: int = 8081
    app: str = "wsdaemon.apps.demo:app"
    #: Largest message accepted (after reassembly); bigger ones close with 1009.
    max_message_size: int = 16 * 1024 * 1024
    #: Outbound bytes a connection may have waiting before it is dropped as a slow consumer.
    max_write_buffer: int = 64 * 1024 * 1024
    max_header_bytes: int = 16384
    max_headers: int = 100
    #: Seconds a new socket has to complete its request head.
    handshake_timeout: float = 10.0
    #: Seconds to wait for the client's close frame after ours.
    close_timeout: float = 5.0
    #: Ping an RFC 6455 client idle this long (0 disables); drop it without a pong in ``ping_timeout``.
    ping_interval: float = 20.0
    ping_timeout: float = 20.0
    #: Seconds given to clients to finish their closing handshake at shutdown.
    shutdown_grace: float = 5.0
    backlog: int = 1024
    static: bool = True
    log_level: str = "info"
