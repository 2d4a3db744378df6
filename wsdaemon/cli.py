"""The ``wsdaemon`` command: ``run`` in the foreground (``start/stop/restart/status`` follow)."""

from __future__ import annotations

import logging
import os
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
    try:
        server = Server(app, settings)
    except (OSError, ValueError) as exc:
        raise click.ClickException(f"cannot start: {exc}") from exc
    try:
        server.listen()
    except OSError as exc:
        raise click.ClickException(
            f"cannot listen on {settings.host}:{settings.port}: {exc.strerror}"
        ) from exc
    server.serve_forever()


@main.command()
@click.option(
    "--app", "app_spec", default=Settings.app, show_default=True, help="Application, as module:attribute."
)
@click.option("--socket", "socket_path", metavar="PATH", help="The daemon's Unix worker socket.")
@click.option("--connect", metavar="HOST:PORT", help="The daemon's TCP worker listener (--worker-listen).")
@click.option(
    "--token-file", type=click.Path(dir_okay=False), help="File with the shared secret (for --connect)."
)
@click.option(
    "--max-frame", type=int, default=16 * 1024 * 1024, show_default=True, help="Largest message in bytes."
)
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default="info")
@click.option(
    "--supervised", is_flag=True, hidden=True, help="Started by the daemon: exit when disconnected."
)
def worker(app_spec, socket_path, connect, token_file, max_frame, log_level, supervised) -> None:
    """Run the application's task functions for a daemon (see docs/workers.md)."""
    from .worker import EXIT_REFUSED, run_worker
    from .workerpool import parse_host_port

    logging.basicConfig(
        level=log_level.upper(),
        format=f"%(asctime)s %(levelname)s %(name)s[{os.getpid()}]: %(message)s",
        stream=sys.stderr,
    )
    if bool(socket_path) == bool(connect):
        raise click.UsageError("give exactly one of --socket PATH and --connect HOST:PORT")
    address = None
    if connect:
        try:
            address = parse_host_port(connect)
        except ValueError as exc:
            raise click.UsageError(str(exc)) from None
    token = ""
    if token_file:
        try:
            with open(token_file, encoding="utf-8") as f:
                token = f.read().strip()
        except OSError as exc:
            raise click.ClickException(f"cannot read {token_file}: {exc.strerror}") from None
    elif connect:
        raise click.UsageError("--connect needs --token-file")
    try:
        status = run_worker(app_spec, socket_path, address, token, supervised, max_frame)
    except KeyboardInterrupt:
        status = 130
    if status == EXIT_REFUSED:
        click.echo("wsdaemon worker: refused by the daemon", err=True)
    sys.exit(status)


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
