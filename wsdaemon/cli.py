"""The ``wsdaemon`` command: ``run`` in the foreground (``start/stop/restart/status`` follow)."""

from __future__ import annotations

import logging
import sys

import click

from . import __version__
from .application import load_app
from .config import Settings, setting_fields
from .server import Server

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def server_options(fn):
    """One click option per :class:`Settings` field, shared by ``run`` and ``start``."""
    for f in reversed(setting_fields()):
        name = "--" + f.name.replace("_", "-")
        help_text = f.metadata.get("help")
        choices = f.metadata.get("choices")
        if f.type in ("bool", bool):
            decl = f"{name}/--no-{f.name.replace('_', '-')}"
            fn = click.option(decl, f.name, default=f.default, show_default=True, help=help_text)(fn)
            continue
        kind = click.Choice(choices, case_sensitive=False) if choices else _CLICK_TYPES[str(f.type)]
        fn = click.option(name, f.name, default=f.default, show_default=True, type=kind, help=help_text)(fn)
    return fn


_CLICK_TYPES = {"int": int, "float": float, "str": str}


def settings_from(options: dict) -> Settings:
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
        click.echo(f"wsdaemon {name}: not implemented yet; use 'wsdaemon run' under a supervisor", err=True)
        ctx.exit(2)

    command.__name__ = name
    return main.command(
        name,
        help=f"{name.capitalize()} the daemon (not implemented yet).",
        context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
    )(command)


for _name in ("start", "stop", "restart", "status"):
    _not_yet(_name)
