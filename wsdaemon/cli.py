"""The ``wsdaemon`` command: ``run`` in the foreground (``start/stop/restart/status`` follow)."""

from __future__ import annotations

import logging
import sys

import click

from . import __version__
from .application import load_app
from .config import Settings
from .server import Server

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def server_options(fn):
    """The options shared by ``run`` and ``start``."""
    defaults = Settings()
    options = [
        click.option(
            "--host", default=defaults.host, show_default=True, help="Address to listen on."
        ),
        click.option("--port", default=defaults.port, show_default=True, type=int),
        click.option(
            "--app", "app_spec", default=defaults.app, show_default=True, help="module:attribute"
        ),
        click.option(
            "--max-message-size", default=defaults.max_message_size, show_default=True, type=int
        ),
        click.option(
            "--max-write-buffer", default=defaults.max_write_buffer, show_default=True, type=int
        ),
        click.option(
            "--handshake-timeout", default=defaults.handshake_timeout, show_default=True, type=float
        ),
        click.option(
            "--ping-interval", default=defaults.ping_interval, show_default=True, type=float
        ),
        click.option(
            "--ping-timeout", default=defaults.ping_timeout, show_default=True, type=float
        ),
        click.option(
            "--close-timeout", default=defaults.close_timeout, show_default=True, type=float
        ),
        click.option(
            "--shutdown-grace", default=defaults.shutdown_grace, show_default=True, type=float
        ),
        click.option(
            "--static/--no-static", default=True, help="Serve the test page and client JS."
        ),
        click.option(
            "--log-level",
            default=defaults.log_level,
            show_default=True,
            type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False),
        ),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def settings_from(options: dict) -> Settings:
    options = dict(options)
    options["app"] = options.pop("app_spec")
    return Settings(**options)


@click.group()
@click.version_option(__version__)
def main() -> None:
    """wsdaemon: a WebSocket daemon (RFC 6455, hixie-76/75, long-polling) on one select loop."""


@main.command()
@server_options
def run(**options) -> None:
    """Serve in the foreground until SIGINT/SIGTERM."""
    settings = settings_from(options)
    logging.basicConfig(level=settings.log_level.upper(), format=LOG_FORMAT, stream=sys.stderr)
    try:
        app = load_app(settings.app)
    except Exception as exc:
        raise click.ClickException(f"cannot load application {settings.app!r}: {exc}") from exc
    server = Server(app, settings)
    try:
        server.listen()
    except OSError as exc:
        raise click.ClickException(
            f"cannot listen on {settings.host}:{settings.port}: {exc.strerror}"
        ) from exc
    server.serve_forever()


def _not_yet(name: str):
    @click.pass_context
    def command(ctx, **_):
        click.echo(
            f"wsdaemon {name}: not implemented yet; use 'wsdaemon run' under a supervisor", err=True
        )
        ctx.exit(2)

    command.__name__ = name
    return main.command(
        name,
        help=f"{name.capitalize()} the daemon (not implemented yet).",
        context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
    )(command)


for _name in ("start", "stop", "restart", "status"):
    _not_yet(_name)
