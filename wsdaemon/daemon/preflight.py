"""Checks before serving: what ``run`` and ``start`` verify so a mistake is one clear line at start.

A setting that is ignored or fails deep inside a library (``[SSL] PEM lib``)
is reported here instead, naming the option to fix.
"""

from __future__ import annotations

import os
import socket
import ssl
import sys
import traceback

from .. import application
from ..application import Application, load_app
from ..net.tls import make_server_context
from ..proto.redis_url import RedisUrlError, parse_redis_url
from ..settings import Settings
from .settings_loader import SettingsSource


class StartupError(Exception):
    """A setting that cannot work; the message names the option."""


def use_app_dir(source: SettingsSource, settings: Settings) -> str:
    """Make ``app_dir`` absolute (empty: this directory), first on sys.path, and fixed for reloads.

    ``start`` works in ``/`` and the worker processes get the directory by
    argument, so it must be absolute before anything changes directory.
    """
    path = os.path.abspath(settings.app_dir or os.getcwd())
    if not os.path.isdir(path):
        raise StartupError(f"--app-dir {path}: no such directory")
    settings.app_dir = path
    source.overrides["app_dir"] = path  # SIGHUP: the same directory (it needs a restart anyway)
    source.origins.setdefault("app_dir", "the directory wsdaemon ran in")
    sys.path[:] = [path] + [entry for entry in sys.path if entry != path]
    return path


def check_tls(settings: Settings) -> None:
    """TLS options that need each other, and a certificate that loads with its key."""
    if not settings.certfile:
        if settings.keyfile:
            raise StartupError(
                f"--keyfile {settings.keyfile} is set without --certfile: "
                "give the certificate with --certfile (or drop --keyfile to serve plain text)"
            )
        if settings.tls_port:
            raise StartupError(
                f"--tls-port {settings.tls_port} is set without --certfile: "
                "give the certificate with --certfile (or drop --tls-port)"
            )
        return
    for option, path in (("--certfile", settings.certfile), ("--keyfile", settings.keyfile)):
        if path and not os.access(path, os.R_OK):
            reason = "no such file" if not os.path.exists(path) else "not readable"
            raise StartupError(f"{option} {path}: {reason}")
    try:
        make_server_context(settings.certfile, settings.keyfile)
    except ValueError as exc:
        raise StartupError(_tls_reason(settings, exc.__context__ or exc)) from None


def check_broker(settings: Settings) -> None:
    """A ``--broker`` URL that parses and a host name that resolves (Redis itself may be down: the
    daemon starts alone and connects when it comes)."""
    if not settings.broker:
        return
    try:
        address = parse_redis_url(settings.broker)
    except RedisUrlError as exc:
        raise StartupError(f"--broker: {exc}") from None
    if address.ca_file and not os.access(address.ca_file, os.R_OK):
        raise StartupError(f"--broker: ssl_ca_certs {address.ca_file}: no such file or not readable")
    if address.host:
        try:
            socket.getaddrinfo(address.host, address.port, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise StartupError(f"--broker: cannot resolve {address.host!r}: {exc.strerror or exc}") from None


def _tls_reason(settings: Settings, exc: BaseException) -> str:
    cert, key = settings.certfile, settings.keyfile
    pem = _read_text(cert)
    if "CERTIFICATE-----" not in pem:
        return f"--certfile {cert} holds no PEM certificate (-----BEGIN CERTIFICATE-----)"
    if not key and "PRIVATE KEY-----" not in pem:
        return f"--certfile {cert} holds no private key: give its key with --keyfile"
    if key and "PRIVATE KEY-----" not in _read_text(key):
        return f"--keyfile {key} holds no PEM private key (-----BEGIN PRIVATE KEY-----)"
    if isinstance(exc, ssl.SSLError) and exc.reason == "KEY_VALUES_MISMATCH":
        where = f"--keyfile {key}" if key else f"the key in --certfile {cert}"
        return f"{where} does not belong to the certificate in --certfile {cert}"
    files = f"--certfile {cert} and --keyfile {key}" if key else f"--certfile {cert}"
    return f"cannot load the TLS certificate from {files}: {exc}"


def _read_text(path: str) -> str:
    try:
        with open(path, encoding="ascii", errors="replace") as fh:
            return fh.read(1 << 20)
    except OSError:
        return ""


def import_application(settings: Settings) -> Application:
    """The application of ``--app``; an import error carries its type and the traceback."""
    try:
        return load_app(settings.app)
    except Exception as exc:
        module = settings.app.partition(":")[0]
        if isinstance(exc, ModuleNotFoundError) and exc.name == module:
            raise StartupError(
                f"cannot load application {settings.app!r}: {exc} (imported from --app-dir {settings.app_dir}"
                " and the Python path)"
            ) from exc
        frames = "".join(_application_traceback(exc).format()).rstrip()
        raise StartupError(
            f"cannot load application {settings.app!r}: {type(exc).__name__}: {exc}\n{frames}"
        ) from exc


def _application_traceback(exc: BaseException) -> traceback.TracebackException:
    """The traceback from the application's own frames on (not load_app's and importlib's)."""
    report = traceback.TracebackException.from_exception(exc)
    machinery = (__file__, application.__file__)
    own = [
        frame
        for frame in report.stack
        if frame.filename not in machinery
        and not frame.filename.startswith("<frozen importlib")
        and not frame.filename.endswith(os.path.join("importlib", "__init__.py"))
    ]
    if own:
        report.stack = traceback.StackSummary.from_list(own)
    return report
