"""Worker connections and the sockets they arrive on: the ``hello`` and its authentication.

Local workers connect to a Unix socket only this user may open, and are checked
by the peer credentials the kernel gives; remote workers (``--worker-listen``)
connect over TCP and prove themselves with the shared token. A connection that
passes is handed to the pool (:class:`WorkerEvents`); until then no task is sent
to it and its frames may not exceed :data:`workerproto.HELLO_MAX_FRAME`.
"""

from __future__ import annotations

import hmac
import logging
import os
import shutil
import socket
import stat
import struct
import tempfile
import time
from typing import Any, Protocol

from ..net.listener import Listener
from ..net.loop import EVENT_READ
from ..net.sockets import bind_socket, format_address
from ..net.stream import StreamConnection
from ..proto import workerproto
from .host import WorkerPoolHost
from .pending import PendingTask

log = logging.getLogger("wsdaemon.workers")

#: Seconds a new worker connection has to send its ``hello``.
HELLO_TIMEOUT = 10.0
#: Connections that have not yet sent ``hello``; more are closed at once.
MAX_PENDING_HELLOS = 64
#: Shortest accepted token for remote workers, in bytes.
MIN_TOKEN_LENGTH = 16

_PEERCRED = struct.Struct("3i")


class WorkerEvents(Protocol):
    """What authenticated worker connections report to: the pool."""

    @property
    def max_inflight(self) -> int: ...

    def worker_joined(self, conn: WorkerConnection, hello: dict[str, Any]) -> None: ...

    def worker_message(self, conn: WorkerConnection, message: dict[str, Any]) -> None: ...

    def worker_lost(self, conn: WorkerConnection) -> None: ...


class WorkerConnection(StreamConnection):
    """One worker's socket: ``hello`` first, then tasks out and answers in."""

    protocol = "worker"

    __slots__ = (
        "gate",
        "pool",
        "decoder",
        "state",
        "remote",
        "pid",
        "worker_host",
        "inflight",
        "connected_at",
    )

    def __init__(self, gate: WorkerListeners, sock: socket.socket, address: Any, remote: bool) -> None:
        super().__init__(gate.host, sock, address)
        self.gate = gate
        self.pool = gate.pool
        self.decoder = workerproto.FrameDecoder(workerproto.HELLO_MAX_FRAME)
        #: "hello" until authenticated, then "ready"; "draining" once told to stop; or "refused".
        self.state = "hello"
        self.remote = remote
        self.pid = 0
        self.worker_host = ""
        #: Tasks sent and not answered, in the order sent; the first one is running.
        self.inflight: dict[int, PendingTask] = {}
        self.connected_at = time.monotonic()
        self.deadline = self.loop.now + HELLO_TIMEOUT
        self.host.watch(self)

    def data_received(self, data: bytes) -> None:
        try:
            messages = self.decoder.feed(data)
        except workerproto.FrameError as exc:
            log.warning("%s: protocol error: %s; dropping the worker", self, exc)
            self.abort(None)
            return
        for message in messages:
            if self.transport_closed or self._draining:
                return
            if self.state == "hello":
                self.gate.hello(self, message)
            else:
                self.pool.worker_message(self, message)

    def send_message(self, message: dict[str, Any]) -> None:
        self.write(workerproto.encode(message))

    def accept(self, pid: int, worker_host: str, max_frame: int) -> None:
        """The ``hello`` passed: the worker may now get tasks and send answers of ``max_frame`` bytes."""
        self.state = "ready"
        self.pid = pid
        self.worker_host = worker_host
        self.decoder.max_size = max_frame
        self.host.unwatch(self)

    def refuse(self, reason: str) -> None:
        log.warning("refused worker connection from %s: %s", format_address(self.remote_address), reason)
        self.state = "refused"
        self.send_message({"type": "refused", "reason": reason})
        self.close_after_flush()

    def stop(self, restart: bool) -> None:
        """Ask the worker to finish the tasks it holds and exit (or, remote, re-execute itself)."""
        if self.state != "ready" or self.transport_closed:
            return
        self.state = "draining"
        self.send_message({"type": "restart" if restart else "stop"})

    def on_deadline(self, now: float) -> None:
        if self.state == "hello":
            log.warning("%s: no hello within %.0f s; dropping it", self, HELLO_TIMEOUT)
            self.abort(None)
        else:
            super().on_deadline(now)

    def connection_lost(self, exc: BaseException | None) -> None:
        self.gate.forget(self)
        self.pool.worker_lost(self)

    @property
    def capacity(self) -> int:
        """How many more tasks may be sent to it now."""
        if self.state != "ready":
            return 0
        return self.pool.max_inflight - len(self.inflight)

    def __repr__(self) -> str:
        where = format_address(self.remote_address) if self.remote else "unix"
        return f"<worker {self.pid or '?'} {where}>"


class WorkerListeners:
    """The sockets workers connect to, and the check of every new connection's ``hello``.

    Opens a Unix socket (``--worker-socket``, or one in a private temporary
    directory) and, with ``--worker-listen``, a TCP listener for remote workers.
    """

    def __init__(self, host: WorkerPoolHost, pool: WorkerEvents) -> None:
        self.host = host
        self.pool = pool
        self.listeners: list[Listener] = []
        self.socket_path = ""
        self._tmpdir = ""
        #: The remote workers' shared secret; None without ``--worker-listen``.
        self.token: bytes | None = None
        self.accepting = True
        self._unauthenticated: set[WorkerConnection] = set()
        if host.settings.worker_listen:
            self.token = read_token(host.settings.worker_token_file)
        try:
            self._open()
        except BaseException:
            self.close()
            raise

    def _open(self) -> None:
        settings = self.host.settings
        if settings.worker_socket:
            path = settings.worker_socket
        else:
            self._tmpdir = tempfile.mkdtemp(prefix="wsdaemon-workers-")
            path = os.path.join(self._tmpdir, "workers.sock")
        try:
            sock = bind_unix_socket(path)
        except OSError as exc:
            raise OSError(f"cannot listen for workers on {path}: {exc.strerror or exc}") from exc
        self.socket_path = path
        self._add(sock, remote=False)
        if settings.worker_listen:
            host, port = parse_host_port(settings.worker_listen)
            try:
                tcp = bind_socket(host, port, 64)
            except OSError as exc:
                raise OSError(
                    f"cannot listen for workers on {settings.worker_listen}: {exc.strerror}"
                ) from exc
            self._add(tcp, remote=True)
            log.info("remote workers: listening on %s", format_address(tcp.getsockname()))

    def _add(self, sock: socket.socket, remote: bool) -> None:
        sock.setblocking(False)

        def connect(client: socket.socket, address: Any) -> WorkerConnection:
            if remote:
                _enable_keepalive(client)
            conn = WorkerConnection(self, client, address, remote)
            self._unauthenticated.add(conn)
            return conn

        listener = Listener(self.host.loop, sock, connect, admit=self.admit)
        self.host.loop.register(sock, EVENT_READ, listener)
        self.listeners.append(listener)

    def admit(self, client: socket.socket, address: Any) -> bool:
        """Accept unless closing or too many connections have not said ``hello``."""
        if not self.accepting:
            client.close()
            return False
        if len(self._unauthenticated) >= MAX_PENDING_HELLOS:
            log.warning(
                "refused worker connection from %s: %d connections have not said hello yet",
                format_address(address),
                len(self._unauthenticated),
            )
            client.close()
            return False
        return True

    def hello(self, conn: WorkerConnection, message: dict[str, Any]) -> None:
        """Authenticate a new worker connection; only then is it handed to the pool."""
        self._unauthenticated.discard(conn)
        if message.get("type") != "hello":
            return conn.refuse("expected hello")
        if message.get("version") != workerproto.PROTOCOL_VERSION:
            return conn.refuse(f"protocol version {message.get('version')!r} not supported")
        pid = message.get("pid") if isinstance(message.get("pid"), int) else 0
        if conn.remote:
            given = message.get("token")
            given = given.encode("utf-8") if isinstance(given, str) else b""
            if self.token is None or not hmac.compare_digest(given, self.token):
                return conn.refuse("bad token")
        else:
            cred_pid, uid = _peer_credentials(conn.sock)
            if uid is not None and uid not in (os.getuid(), 0):
                return conn.refuse(f"uid {uid} is not allowed")
            pid = cred_pid or pid
        if not self.accepting:
            return conn.refuse("shutting down")
        conn.accept(pid, str(message.get("host") or ""), self.host.settings.task_max_size)
        self.pool.worker_joined(conn, message)

    def forget(self, conn: WorkerConnection) -> None:
        """A connection is gone before or after its ``hello``."""
        self._unauthenticated.discard(conn)

    def reload_token(self) -> None:
        """SIGHUP: read the token file again; a file that does not load keeps the token."""
        if self.token is None:
            return
        try:
            token = read_token(self.host.settings.worker_token_file)
        except (OSError, ValueError) as exc:
            log.error("reload: keeping the worker token: %s", exc)
            return
        if token != self.token:
            log.info("reload: new worker token; connected workers keep their connection")
        self.token = token

    def stop_accepting(self) -> None:
        """Close the listening sockets: new workers are refused from now on."""
        self.accepting = False
        for listener in self.listeners:
            listener.close()

    def close(self) -> None:
        """Close the listening sockets and remove the Unix socket file."""
        self.stop_accepting()
        if self.socket_path:
            try:
                os.unlink(self.socket_path)
            except OSError:
                pass
        if self._tmpdir:
            shutil.rmtree(self._tmpdir, ignore_errors=True)


def read_token(path: str) -> bytes:
    """The shared secret for remote workers: the file's content without surrounding whitespace."""
    if not path:
        raise ValueError("--worker-listen needs --worker-token-file")
    with open(path, "rb") as f:
        mode = os.fstat(f.fileno()).st_mode
        token = f.read().strip()
    if len(token) < MIN_TOKEN_LENGTH:
        raise ValueError(f"worker token in {path} is shorter than {MIN_TOKEN_LENGTH} bytes")
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("worker token file %s is readable by others than its owner", path)
    return token


def parse_host_port(text: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``[V6]:PORT`` -> (host, port)."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"expected HOST:PORT, got {text!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port)


def bind_unix_socket(path: str) -> socket.socket:
    """A listening Unix socket at ``path``, only for this user; a stale socket file is replaced."""
    if os.path.exists(path):
        if not stat.S_ISSOCK(os.stat(path).st_mode):
            raise OSError(f"{path} exists and is not a socket")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(path)
        except OSError:
            os.unlink(path)  # nobody listens there: left over from a previous run
        else:
            raise OSError(f"{path} is in use by another process")
        finally:
            probe.close()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        old_umask = os.umask(0o177)
        try:
            sock.bind(path)
        finally:
            os.umask(old_umask)
        sock.listen(64)
    except OSError:
        sock.close()
        raise
    return sock


def _peer_credentials(sock: socket.socket) -> tuple[int, int | None]:
    try:
        pid, uid, _gid = _PEERCRED.unpack(
            sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size)
        )
    except (AttributeError, OSError):
        return 0, None
    return pid, uid


def _enable_keepalive(sock: socket.socket) -> None:
    """Notice a remote worker whose machine vanished, even while it computes silently."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for name, value in (("TCP_KEEPIDLE", 30), ("TCP_KEEPINTVL", 10), ("TCP_KEEPCNT", 3)):
        opt = getattr(socket, name, None)
        if opt is not None:
            sock.setsockopt(socket.IPPROTO_TCP, opt, value)
