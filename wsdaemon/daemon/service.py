"""Running the server as a service: ``run`` with signals, daemonized ``start``, ``stop``, ``status``.

``start`` checks everything that can fail early in the foreground (pid file,
log file, application import, binding the port), then forks. The child lets
python-daemon detach (``DaemonContext``: new session, working directory ``/``,
umask 022, every other descriptor closed, stdout/stderr into the log file, the
pid-lock file) and serves on the socket bound before the fork. The foreground
process waits on a pipe until the daemon writes ``ready PID`` or ``error
MESSAGE``, so its exit status tells whether the daemon is really serving.

Signals reach the loop through its wake-up fd (:meth:`EventLoop.add_signal_handler`):
SIGTERM/SIGINT shut down gracefully (1001 to every client, then exit 0),
SIGHUP reloads the config file, SIGUSR1 reopens the log file.
"""

from __future__ import annotations

import dataclasses
import hashlib
import http.client
import json
import logging
import os
import select
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

from .. import __version__
from ..application import Application
from ..net.sockets import bind_socket
from ..server import Server, plural
from ..settings import Settings
from .logs import LogSetup
from .malloc_tuning import MemoryTrim, keep_large_buffers_in_heap
from .pidfile import ABSENT, RUNNING, AlreadyRunning, PidFile, process_exists
from .preflight import StartupError, check_broker, check_tls, import_application, use_app_dir
from .settings_loader import SettingsSource

log = logging.getLogger("wsdaemon.service")

#: How long ``start`` waits for the daemon to report that it serves.
START_TIMEOUT = 30.0
#: Extra seconds ``stop`` waits beyond the shutdown grace period.
STOP_MARGIN = 10.0

# LSB exit codes of ``status``
STATUS_RUNNING, STATUS_DEAD, STATUS_NOT_RUNNING, STATUS_UNKNOWN = 0, 1, 3, 4
#: LSB exit code of ``reload`` when the daemon is not running.
NOT_RUNNING = 7


class ServiceError(Exception):
    """A failure to report on the terminal; ``code`` is the exit status."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def default_pidfile(port: int, config_path: str | None = None) -> str:
    """``/run`` (root) or the temporary directory: one pid file per config file, else per port.

    With a config file the name comes from the file's path, never from a
    setting inside it, so editing ``port`` and reloading still finds the daemon.
    """
    directory = "/run" if os.geteuid() == 0 else tempfile.gettempdir()
    if config_path:
        path = os.path.abspath(config_path)
        stem = os.path.splitext(os.path.basename(path))[0] or "config"
        digest = hashlib.sha256(path.encode()).hexdigest()[:8]
        return os.path.join(directory, f"wsdaemon-{stem}-{digest}.pid")
    return os.path.join(directory, f"wsdaemon-{port}.pid")


def pidfile_path(settings: Settings, config_path: str | None = None) -> str:
    return settings.pidfile or default_pidfile(settings.port, config_path)


def port_note(settings: Settings) -> str:
    """The pid file's second line: the port the daemon serves, which a reload cannot change."""
    return f"port {settings.port}"


def prepare(source: SettingsSource, settings: Settings) -> tuple[Application, socket.socket]:
    """Import the application and bind the port: what can fail before a daemon exists."""
    check_processes(settings)
    try:
        use_app_dir(source, settings)
        check_tls(settings)
        check_broker(settings)
        app = import_application(settings)
    except StartupError as exc:
        raise ServiceError(str(exc)) from exc
    try:
        sock = bind_socket(settings.host, settings.port, settings.backlog)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise ServiceError(f"cannot listen on {settings.host}:{settings.port}: {reason}") from exc
    return app, sock


class SystemdNotifier:
    """``sd_notify`` for ``Type=notify`` units: READY=1 once serving, RELOADING=1 around SIGHUP."""

    def __init__(self) -> None:
        # Taken out of the environment so that child processes do not inherit it.
        address = os.environ.pop("NOTIFY_SOCKET", "")
        self.address = "\0" + address[1:] if address.startswith("@") else address

    def notify(self, state: str) -> None:
        if not self.address:
            return
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.sendto(state.encode(), self.address)
        except OSError as exc:
            log.warning("cannot notify systemd at %r: %s", self.address, exc)


def serve(
    source: SettingsSource,
    settings: Settings,
    app: Application,
    sock: socket.socket,
    logs: LogSetup,
    ready: Callable[[], None] | None = None,
) -> None:
    """Serve on ``sock`` until SIGTERM/SIGINT; SIGHUP reloads, SIGUSR1 reopens the log."""
    if settings.processes > 1:
        serve_processes(source, settings, app, sock, logs, ready)
        return
    _serve_one(source, settings, app, sock, logs, ready)


def check_processes(settings: Settings) -> None:
    """``--processes`` above 1 needs a broker (rooms and broadcasts must reach every child) and
    no ``--worker-listen`` (one TCP port cannot be every child's)."""
    if settings.processes <= 1:
        return
    if not settings.broker:
        raise ServiceError(
            f"--processes {settings.processes} needs --broker redis://...: without a broker, rooms, "
            "broadcasts and presence would not span the processes (see docs/scaling.md)",
            2,
        )
    if settings.worker_listen:
        raise ServiceError(
            f"--worker-listen cannot be used with --processes {settings.processes}: remote workers "
            "would reach only one child (see docs/scaling.md)",
            2,
        )


def child_settings(settings: Settings, slot: int) -> Settings:
    """What the child in ``slot`` runs with: its own worker socket, /status and /metrics on a
    private loopback port (the parent serves ``--metrics-listen``)."""
    changes: dict[str, Any] = {"metrics_listen": "127.0.0.1:0"}
    if settings.worker_socket:
        changes["worker_socket"] = f"{settings.worker_socket}.{slot}"
    return dataclasses.replace(settings, **changes)


def serve_processes(
    source: SettingsSource,
    settings: Settings,
    app: Application,
    sock: socket.socket,
    logs: LogSetup,
    ready: Callable[[], None] | None = None,
) -> None:
    """The supervising parent: N children serve on the inherited ``sock`` (daemon/arbiter.py)."""
    from ..net.handoff import ProcessSlots
    from .arbiter import Arbiter
    from .children import ParentEndpoint

    slots = ProcessSlots(settings.processes)  # before the forks: every child inherits them
    endpoint = None
    if settings.metrics_listen:
        host, _, port = settings.metrics_listen.rpartition(":")
        try:
            metrics_sock = bind_socket(host.strip("[]") or "127.0.0.1", int(port), 128)
        except OSError as exc:
            raise ServiceError(f"cannot listen on {settings.metrics_listen}: {exc.strerror or exc}") from exc
        endpoint = ParentEndpoint(metrics_sock, slots, settings.port)
        log.info("metrics and status of the %d children on %s", settings.processes, settings.metrics_listen)
    notifier = SystemdNotifier()  # the parent is MAINPID; children never notify

    def child_main(index: int) -> int:
        def adjust(loaded: Settings) -> Settings:
            return child_settings(loaded, index)

        _serve_one(source, adjust(settings), app, sock, logs, None, (slots, index), adjust)
        return 0

    def on_ready() -> None:
        notifier.notify(f"READY=1\nMAINPID={os.getpid()}")
        if ready is not None:
            ready()

    arbiter = Arbiter(
        settings.processes, child_main, settings.shutdown_grace + STOP_MARGIN, logs.reopen, slots
    )
    if endpoint is not None:
        arbiter.watched.append(endpoint)
    log.info("supervising %d processes on port %d (pid %d)", settings.processes, settings.port, os.getpid())
    try:
        arbiter.run(on_ready)
    finally:
        if endpoint is not None:
            endpoint.close()
        slots.close()
        sock.close()
    log.info("stopped")


def _serve_one(
    source: SettingsSource,
    settings: Settings,
    app: Application,
    sock: socket.socket,
    logs: LogSetup,
    ready: Callable[[], None] | None = None,
    process: tuple[Any, int] | None = None,
    adjust: Callable[[Settings], Settings] | None = None,
) -> None:
    """One serving loop: the daemon itself, or (``process``: slots and slot) one --processes child,
    whose settings, at start and at each reload, pass through ``adjust``."""
    if settings.malloc_tuning:
        keep_large_buffers_in_heap(settings.max_message_size)
    try:
        server = Server(app, settings)
    except (OSError, ValueError) as exc:
        raise ServiceError(f"cannot start: {exc}") from exc
    server.listen(sock)
    server.memory = server.add_component(MemoryTrim(server))
    if process is not None:
        from ..transports.handoff import Handoff

        server.process = server.add_component(Handoff(server, *process))
    loop = server.loop
    notifier = SystemdNotifier()
    server.add_component(logs, first=True)

    def load_settings() -> Settings:
        notifier.notify("RELOADING=1")
        loop.call_soon(notifier.notify, "READY=1")  # after the reload, even a failed one
        loaded = source.load()
        return adjust(loaded) if adjust is not None else loaded

    def on_ready() -> None:
        notifier.notify(f"READY=1\nMAINPID={os.getpid()}")
        if ready is not None:
            ready()

    server.settings_loader = load_settings
    loop.add_signal_handler(signal.SIGUSR1, logs.reopen)
    loop.call_soon(on_ready)
    server.serve_forever()
    log.info("stopped")


def run_foreground(source: SettingsSource, settings: Settings) -> None:
    """``wsdaemon run``: serve in this process, with an optional pid file."""
    try:
        logs = LogSetup(settings.logfile, settings.log_level, log_format=settings.log_format)
    except OSError as exc:
        raise ServiceError(f"cannot open log file {settings.logfile}: {exc.strerror}") from exc
    pidfile = PidFile(settings.pidfile, port_note(settings)) if settings.pidfile else None
    try:
        if pidfile is not None:
            _acquire(pidfile)
        app, sock = prepare(source, settings)
        serve(source, settings, app, sock, logs)
    finally:
        if pidfile is not None:
            pidfile.release()


def _acquire(pidfile: PidFile) -> None:
    try:
        pidfile.acquire()
    except AlreadyRunning as exc:
        raise ServiceError(str(exc)) from exc
    except OSError as exc:
        raise ServiceError(f"cannot write pid file {pidfile.path}: {exc.strerror}") from exc
    if pidfile.replaced_pid:
        log.info("replaced stale pid file %s (pid %d)", pidfile.path, pidfile.replaced_pid)


# -- start ------------------------------------------------------------------------


def start_daemon(source: SettingsSource, settings: Settings, say: Callable[[str], Any]) -> int:
    """Daemonize after the early checks; return the daemon's pid once it serves."""
    path = pidfile_path(settings, source.config_path)
    pidfile = PidFile(path, port_note(settings))
    state, pid = pidfile.check()
    if state == RUNNING:
        raise ServiceError(f"already running (pid {pid or '?'}, pid file {path})")
    if state != ABSENT:
        say(f"wsdaemon: replacing stale pid file {path} (pid {pid} is not running)")
    if not os.access(os.path.dirname(path) or ".", os.W_OK):
        raise ServiceError(f"cannot write pid file {path}: directory not writable")
    log_stream = None
    if settings.logfile:
        try:
            log_stream = open(settings.logfile, "a")  # noqa: SIM115 - handed to the daemon
        except OSError as exc:
            raise ServiceError(f"cannot open log file {settings.logfile}: {exc.strerror}") from exc
    _keep_import_path()
    app, sock = prepare(source, settings)
    read_end, write_end = os.pipe()
    child = os.fork()
    if child:
        os.close(write_end)
        sock.close()
        if log_stream is not None:
            log_stream.close()
        try:
            return _wait_ready(read_end, settings.logfile)
        finally:
            os.close(read_end)
            os.waitpid(child, 0)
    os.close(read_end)
    status = 1
    try:
        status = _daemon_main(source, settings, app, sock, pidfile, log_stream, write_end)
    finally:
        os._exit(status)


def _keep_import_path() -> None:
    """The daemon works in ``/``: keep the directory ``python -m`` put on sys.path importable.

    Also through PYTHONPATH, for the worker processes the daemon starts.
    """
    cwd = os.getcwd()
    if "" in sys.path or cwd in sys.path:
        sys.path[:] = [cwd if entry == "" else entry for entry in sys.path]
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [cwd, os.environ.get("PYTHONPATH")]))


def _daemon_main(
    source: SettingsSource,
    settings: Settings,
    app: Application,
    sock: socket.socket,
    pidfile: PidFile,
    log_stream: Any,
    report_fd: int,
) -> int:
    import daemon  # python-daemon

    reported = False

    def report(line: str) -> None:
        nonlocal reported
        if not reported:
            reported = True
            try:
                os.write(report_fd, line.encode() + b"\n")
                os.close(report_fd)
            except OSError:
                pass

    context = daemon.DaemonContext(
        working_directory="/",
        umask=0o022,
        detach_process=True,
        files_preserve=[sock, report_fd],
        stdout=log_stream,
        stderr=log_stream,
        pidfile=pidfile,
    )
    try:
        context.open()  # the first two forks exit inside; only the daemon returns
    except AlreadyRunning as exc:
        report(f"error {exc}")
        return 1
    except Exception as exc:
        report(f"error cannot daemonize: {exc}")
        return 1
    if log_stream is not None:
        log_stream.close()  # descriptors 1 and 2 are its copies now
    try:
        logs = LogSetup(
            settings.logfile,
            settings.log_level,
            redirect_std=bool(settings.logfile),
            log_format=settings.log_format,
        )
        log.info("wsdaemon %s daemon started (pid %d)", __version__, os.getpid())
        serve(source, settings, app, sock, logs, ready=lambda: report(f"ready {os.getpid()}"))
        return 0
    except BaseException as exc:
        log.exception("daemon failed")
        report(f"error {type(exc).__name__}: {exc}")
        return 1
    finally:
        logging.shutdown()
        context.close()


def _wait_ready(fd: int, logfile: str) -> int:
    deadline = time.monotonic() + START_TIMEOUT
    data = b""
    while b"\n" not in data:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise ServiceError(f"the daemon did not report ready within {START_TIMEOUT:.0f} s")
        readable, _, _ = select.select([fd], [], [], remaining)
        if readable:
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            data += chunk
    kind, _, detail = data.decode(errors="replace").strip().partition(" ")
    if kind == "ready":
        return int(detail)
    if kind == "error":
        raise ServiceError(detail)
    where = f"; see {logfile}" if logfile else ""
    raise ServiceError(f"the daemon exited during start-up{where}")


# -- stop, reload, status ------------------------------------------------------------


def stop_daemon(
    settings: Settings, timeout: float | None, say: Callable[[str], Any], config_path: str | None = None
) -> None:
    """SIGTERM the daemon of the pid file and wait until it has exited."""
    pidfile = PidFile(pidfile_path(settings, config_path))
    state, pid = pidfile.check()
    if state == ABSENT:
        say("wsdaemon is not running")
        return
    if state != RUNNING:
        pidfile.remove_stale()
        say(f"wsdaemon is not running (removed stale pid file {pidfile.path}, pid {pid})")
        return
    if pid is None:
        raise ServiceError(f"pid file {pidfile.path} is locked but empty; still starting?")
    if timeout is None:
        timeout = settings.shutdown_grace + STOP_MARGIN
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while process_exists(pid):
        if time.monotonic() > deadline:
            raise ServiceError(f"pid {pid} still runs {timeout:g} s after SIGTERM")
        time.sleep(0.05)
    pidfile.remove_stale()  # only if the daemon could not remove it itself
    say(f"wsdaemon stopped (pid {pid})")


def signal_daemon(settings: Settings, signum: int, config_path: str | None = None) -> int:
    """Send ``signum`` to the running daemon; its pid."""
    pidfile = PidFile(pidfile_path(settings, config_path))
    state, pid = pidfile.check()
    if state != RUNNING or pid is None:
        raise ServiceError(f"wsdaemon is not running (pid file {pidfile.path})", NOT_RUNNING)
    os.kill(pid, signum)
    return pid


def status_host(host: str) -> str:
    """Where to reach a daemon listening on ``host`` from this machine."""
    if host in ("", "0.0.0.0", "*"):
        return "127.0.0.1"
    if host == "::":
        return "::1"
    return host


def fetch_status(settings: Settings, timeout: float = 3.0) -> dict:
    """The daemon's ``GET /status`` document (straight to the port: no proxy from the environment)."""
    conn = http.client.HTTPConnection(status_host(settings.host), settings.port, timeout=timeout)
    try:
        conn.request("GET", "/status")
        resp = conn.getresponse()
        if resp.status != 200:
            raise ValueError(f"/status answered {resp.status} {resp.reason}")
        return json.loads(resp.read(65536))
    finally:
        conn.close()


def daemon_status(settings: Settings, config_path: str | None = None) -> tuple[int, str]:
    """LSB status code and the line to print."""
    path = pidfile_path(settings, config_path)
    try:
        state, pid = PidFile(path).check()
        note = PidFile(path).read_note()
    except OSError as exc:
        return STATUS_UNKNOWN, f"wsdaemon status unknown: cannot read pid file {path}: {exc.strerror}"
    if state == ABSENT:
        return STATUS_NOT_RUNNING, "wsdaemon is not running"
    if state != RUNNING:
        return STATUS_DEAD, f"wsdaemon is dead: pid file {path} remains, pid {pid} is not running"
    configured = settings.port
    served = note.split()[1] if note.startswith("port ") and note[5:].strip().isdigit() else ""
    if served and int(served) != configured:
        settings = dataclasses.replace(settings, port=int(served))
    try:
        doc = fetch_status(settings)
    except (OSError, ValueError) as exc:
        return STATUS_RUNNING, (
            f"wsdaemon is running: pid {pid}, but port {settings.port} does not answer /status: {exc}"
        )
    served_by = doc.get("pid")
    ours = isinstance(served_by, int) and parent_pid(served_by) == pid
    if served_by != pid and ours and isinstance(doc.get("process"), dict):
        line = processes_status_lines(pid, doc)
    else:
        line = f"wsdaemon is running: pid {pid}, port {doc.get('port')}, " + _connections_text(doc)
        if served_by != pid and ours:
            line += f"; answered by its child pid {served_by} (--processes)"
        elif served_by != pid:
            line += f"; note: port {settings.port} is served by pid {served_by}"
    if settings.port != configured:
        line += f"; the settings say port {configured} now: restart to apply"
    return STATUS_RUNNING, line


def _connections_text(doc: dict) -> str:
    per = ", ".join(f"{name} {n}" for name, n in sorted(doc.get("by_protocol", {}).items()))
    return (
        f"uptime {format_uptime(doc.get('uptime', 0))}, "
        f"{plural(doc.get('connections', 0), 'connection')}" + (f" ({per})" if per else "")
    )


def processes_status_lines(pid: int, doc: dict) -> str:
    """``--processes``: the sum over the children, then one line per child (from their private ports)."""
    from .children import children_status, live_ports

    records = [
        (c.get("slot", 0), c.get("pid", 0), c.get("status_port", 0)) for c in doc["process"]["processes"]
    ]
    summed = children_status(live_ports(records))
    count = len(records)
    lines = [
        f"wsdaemon is running: pid {pid} ({count} process{'es' if count != 1 else ''}), port {doc.get('port')}, "
        f"{plural(summed['connections'], 'connection')} in all"
        + (
            " (" + ", ".join(f"{name} {n}" for name, n in sorted(summed["by_protocol"].items())) + ")"
            if summed["by_protocol"]
            else ""
        )
    ]
    by_pid = {child.get("pid"): child for child in summed["children"]}
    for slot, child_pid, _port in records:
        child = by_pid.get(child_pid)
        if not child_pid:
            lines.append(f"  child {slot}: restarting")
        elif child is None or "error" in child:
            lines.append(f"  child {slot}: pid {child_pid}, no answer")
        else:
            lines.append(f"  child {slot}: pid {child_pid}, " + _connections_text(child))
    return "\n".join(lines)


def parent_pid(pid: int) -> int:
    """The parent of ``pid`` from /proc (0 when unknown): a --processes child answers /status."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return 0


def format_uptime(seconds: float) -> str:
    seconds = int(seconds)
    days, rest = divmod(seconds, 86400)
    text = f"{rest // 3600}:{rest % 3600 // 60:02d}:{rest % 60:02d}"
    return f"{days}d {text}" if days else text
