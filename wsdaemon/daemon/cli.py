"""The ``wsdaemon`` command: ``run`` in the foreground; ``start/stop/restart/reload/status`` a daemon.

Every command takes the same options (one per :class:`Settings` field, plus
``--config``), so one command line or config file serves them all; ``stop``,
``reload``, ``reopen-logs`` and ``status`` only use the pid file, address and port.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from typing import Any

import click
from click.core import ParameterSource

from .. import __version__
from ..settings import Settings, setting_fields
from .service import (
    ServiceError,
    daemon_status,
    pidfile_path,
    run_foreground,
    signal_daemon,
    start_daemon,
    stop_daemon,
)
from .settings_loader import (
    CONFIG_ENV,
    Number,
    SettingsError,
    SettingsSource,
    env_var,
    format_value,
    is_flag,
    option_name,
    param_type,
    sample_config,
    source_from_click,
)


class SettingOption(click.Option):
    """An option whose errors say where the bad value came from: the command line or its variable."""

    def consume_value(self, ctx: click.Context, opts: Any) -> Any:
        value, source = super().consume_value(ctx, opts)
        ctx.meta[f"wsdaemon.source.{self.name}"] = source  # click records it only after converting
        return value, source

    def get_error_hint(self, ctx: click.Context | None) -> str:
        source = ctx.meta.get(f"wsdaemon.source.{self.name}") if ctx is not None else None
        if source == ParameterSource.ENVIRONMENT:
            return f"environment variable {self.envvar} (for {self.opts[0]})"
        hint = " / ".join(f"'{opt}'" for opt in self.opts)
        return hint + (" on the command line" if source == ParameterSource.COMMANDLINE else "")


def server_options(fn):
    """One click option per :class:`Settings` field (with its ``WSDAEMON_*`` variable), and ``--config``."""
    for f in reversed(setting_fields()):
        name = option_name(f)
        common = dict(
            cls=SettingOption,
            default=f.default,
            show_default=format_value(f.default, f),
            help=f.metadata.get("help"),
            envvar=env_var(f),
            show_envvar=True,
        )
        if is_flag(f):
            fn = click.option(f"{name}/--no-{name[2:]}", f.name, **common)(fn)
        else:
            fn = click.option(name, f.name, type=param_type(f), **common)(fn)
    fn = click.option(
        "--config",
        "config",
        type=click.Path(dir_okay=False),
        envvar=CONFIG_ENV,
        show_envvar=True,
        help="INI file with a [wsdaemon] section; command line and environment override it.",
    )(fn)
    return fn


def load_settings(
    ctx: click.Context, options: dict[str, Any], tolerant: bool = False
) -> tuple[SettingsSource, Settings]:
    """The command's settings; a bad config file is an error.

    ``tolerant`` (stop, status, reopen-logs): when the pid file is given on the
    command line or in the environment, a broken config file is only a warning,
    so a daemon can still be stopped after someone broke its file.
    """
    source = source_from_click(ctx, options)
    try:
        return source, source.load()
    except SettingsError as exc:
        if not (tolerant and "pidfile" in source.overrides):
            raise click.ClickException(str(exc)) from exc
        click.echo(f"Warning: {exc}; ignoring the config file", err=True)
        return source, Settings(**source.overrides)


def fail(exc: ServiceError) -> click.ClickException:
    error = click.ClickException(str(exc))
    error.exit_code = exc.code
    return error


@click.group()
@click.version_option(__version__)
def main() -> None:
    """wsdaemon: a WebSocket daemon (RFC 6455, hixie-76/75, long-polling) on one select loop."""


@main.command()
@server_options
@click.pass_context
def run(ctx: click.Context, **options: Any) -> None:
    """Serve in the foreground (systemd, supervisors) until SIGINT/SIGTERM.

    SIGHUP reloads the config file, SIGUSR1 reopens the log file. With
    --pidfile, a pid-lock file is held while serving.
    """
    source, settings = load_settings(ctx, options)
    try:
        run_foreground(source, settings)
    except ServiceError as exc:
        raise fail(exc) from exc


@main.command()
@server_options
@click.pass_context
def start(ctx: click.Context, **options: Any) -> None:
    """Start the daemon in the background; exit 0 once it serves, 1 with the reason if it cannot."""
    source, settings = load_settings(ctx, options)
    _start(source, settings)


def _start(source: SettingsSource, settings: Settings) -> None:
    try:
        pid = start_daemon(source, settings, say=click.echo)
    except ServiceError as exc:
        raise fail(exc) from exc
    where = f", log {settings.logfile}" if settings.logfile else " (no --logfile: log discarded)"
    click.echo(
        f"wsdaemon started: pid {pid}, port {settings.port}, pid file {pidfile_path(settings, source.config_path)}{where}"
    )


_timeout_option = click.option(
    "--timeout",
    type=click.FloatRange(0),
    default=None,
    help="Seconds to wait for the daemon to exit [default: shutdown grace + 10].",
)


@main.command()
@_timeout_option
@server_options
@click.pass_context
def stop(ctx: click.Context, timeout: float | None, **options: Any) -> None:
    """Stop the daemon gracefully (SIGTERM) and wait until it has exited."""
    source, settings = load_settings(ctx, options, tolerant=True)
    try:
        stop_daemon(settings, timeout, say=click.echo, config_path=source.config_path)
    except ServiceError as exc:
        raise fail(exc) from exc


@main.command()
@_timeout_option
@server_options
@click.pass_context
def restart(ctx: click.Context, timeout: float | None, **options: Any) -> None:
    """Stop the daemon (if it runs), then start it with these options."""
    source, settings = load_settings(ctx, options)
    try:
        stop_daemon(settings, timeout, say=click.echo, config_path=source.config_path)
    except ServiceError as exc:
        raise fail(exc) from exc
    _start(source, settings)


@main.command()
@server_options
@click.pass_context
def reload(ctx: click.Context, **options: Any) -> None:
    """Make the daemon reload its config file (SIGHUP) without dropping clients.

    The file is checked first: a broken one is refused and the daemon keeps running as it is.
    """
    _signal(ctx, options, signal.SIGHUP, "reload")


@main.command("reopen-logs")
@server_options
@click.pass_context
def reopen_logs(ctx: click.Context, **options: Any) -> None:
    """Make the daemon reopen its log file (SIGUSR1), after logrotate moved it."""
    _signal(ctx, options, signal.SIGUSR1, "log reopen", tolerant=True)


def _signal(
    ctx: click.Context, options: dict[str, Any], signum: int, what: str, tolerant: bool = False
) -> None:
    source, settings = load_settings(ctx, options, tolerant)
    try:
        pid = signal_daemon(settings, signum, source.config_path)
    except ServiceError as exc:
        raise fail(exc) from exc
    click.echo(f"wsdaemon: {what} requested ({signal.Signals(signum).name} to pid {pid})")


@main.command()
@server_options
@click.pass_context
def status(ctx: click.Context, **options: Any) -> None:
    """Print pid, port, uptime and connections; exit 0 running, 1 dead (stale pid file), 3 stopped."""
    source, settings = load_settings(ctx, options, tolerant=True)
    code, line = daemon_status(settings, source.config_path)
    click.echo(line)
    ctx.exit(code)


@main.command("show-config")
@click.option("--sample", is_flag=True, help="Print the documented sample config file instead.")
@server_options
@click.pass_context
def show_config(ctx: click.Context, sample: bool, **options: Any) -> None:
    """Print the effective settings (command line > environment > file > defaults) and where each comes from."""
    if sample:
        click.echo(sample_config(), nl=False)
        return
    source = source_from_click(ctx, options)
    try:
        rows = source.explain()
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo("[wsdaemon]")
    for f, value, origin in rows:
        click.echo(f"{f.name} = {format_value(value, f)}".ljust(40) + f" # {origin}")


@main.command()
@click.option(
    "--app", "app_spec", default=Settings.app, show_default=True, help="Application, as module:attribute."
)
@click.option(
    "--app-dir",
    type=click.Path(file_okay=False),
    default=".",
    show_default=True,
    help="Directory put first on the import path for --app.",
)
@click.option("--socket", "socket_path", metavar="PATH", help="The daemon's Unix worker socket.")
@click.option("--connect", metavar="HOST:PORT", help="The daemon's TCP worker listener (--worker-listen).")
@click.option(
    "--token-file", type=click.Path(dir_okay=False), help="File with the shared secret (for --connect)."
)
@click.option(
    "--max-frame",
    type=Number("bytes", 1),
    default=16 * 1024 * 1024,
    show_default="16M",
    help="Largest message in bytes (256k, 8M, 1G: k=1024).",
)
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default="info")
@click.option(
    "--supervised", is_flag=True, hidden=True, help="Started by the daemon: exit when disconnected."
)
def worker(app_spec, app_dir, socket_path, connect, token_file, max_frame, log_level, supervised) -> None:
    """Run the application's task functions for a daemon (see docs/workers.md)."""
    app_dir = os.path.abspath(app_dir)
    sys.path[:] = [app_dir] + [entry for entry in sys.path if entry != app_dir]
    from ..workers.connection import parse_host_port
    from ..workers.worker import EXIT_REFUSED, run_worker

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


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
