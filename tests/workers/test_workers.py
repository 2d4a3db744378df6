"""Worker processes end to end: the real daemon, real worker processes, real sockets.

The daemon serves ``tests/taskapp.py``: a JSON message submits a task and is
answered with its result or error; anything else is echoed.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import struct
import subprocess
import sys
import time
import urllib.request

import pytest
import websocket

from tests.support.daemon_process import REPO, free_port
from wsdaemon.proto import workerproto

APP = "tests.support.taskapp:app"


class TaskClient:
    """One WebSocket connection to the task app; answers are matched by request id."""

    def __init__(self, url: str, timeout: float = 20.0) -> None:
        self.ws = websocket.create_connection(url, timeout=timeout)
        self.ids = iter(range(1, 1_000_000))
        self.answers: dict[int, dict] = {}

    def submit(self, task: str, *args, **kwargs) -> int:
        request_id = next(self.ids)
        self.ws.send(json.dumps({"id": request_id, "task": task, "args": list(args), "kwargs": kwargs}))
        return request_id

    def wait(self, *request_ids: int, timeout: float = 30.0) -> list[dict]:
        deadline = time.monotonic() + timeout
        while not all(i in self.answers for i in request_ids):
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"no answer for {[i for i in request_ids if i not in self.answers]}"
            self.ws.settimeout(remaining)
            answer = json.loads(self.ws.recv())
            self.answers[answer["id"]] = answer
        return [self.answers.pop(i) for i in request_ids]

    def call(self, task: str, *args, timeout: float = 30.0, **kwargs) -> dict:
        return self.wait(self.submit(task, *args, **kwargs), timeout=timeout)[0]

    def stats(self) -> dict:
        request_id = next(self.ids)
        self.ws.send(json.dumps({"id": request_id, "stats": True}))
        return self.wait(request_id)[0]["stats"]

    def wait_for(self, predicate, what: str, timeout: float = 20.0) -> dict:
        """Poll the pool's statistics until ``predicate(stats)`` holds."""
        deadline = time.monotonic() + timeout
        while True:
            stats = self.stats()
            if predicate(stats):
                return stats
            assert time.monotonic() < deadline, f"timed out waiting for {what}: {stats}"
            time.sleep(0.05)

    def wait_for_workers(self, n: int, exclude: set[int] = frozenset(), timeout: float = 20.0) -> list[int]:
        stats = self.wait_for(
            lambda s: (
                len([w for w in s["workers"] if w["state"] == "ready" and w["pid"] not in exclude]) == n
                and not s["restarting"]
            ),
            f"{n} ready workers",
            timeout,
        )
        return [w["pid"] for w in stats["workers"] if w["state"] == "ready"]

    def close(self) -> None:
        self.ws.close()


@pytest.fixture
def start(daemon_factory):
    """Start the task app with workers; returns (daemon, client) once ``ready`` workers joined."""
    clients = []

    def run(*args: str, ready: int | None = None, env: dict | None = None):
        d = daemon_factory(*args, app=APP, env=env)
        client = TaskClient(d.url)
        clients.append(client)
        if ready:
            client.wait_for_workers(ready)
        return d, client

    yield run
    for client in clients:
        try:
            client.close()
        except Exception:
            pass


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except FileNotFoundError:
        return False


def wait_until(condition, what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def error_of(answer: dict) -> tuple[str, str]:
    assert "error" in answer, answer
    return answer["error"]["type"], answer["error"]["message"]


# -- results and errors --------------------------------------------------------------


def test_tasks_return_results_and_errors(start):
    d, client = start("--workers", "2", ready=2)
    assert client.call("add", 2, 3)["result"] == 5
    assert client.call("add", "a", b="b")["result"] == "ab"

    answer = client.call("fail", "bad cell 3")
    assert error_of(answer) == ("ValueError", "bad cell 3")
    assert "raise ValueError(message)" in answer["error"]["traceback"]  # the worker's traceback
    assert error_of(client.call("fail_custom", 7)) == ("tests.support.taskapp.GridError", "cell 7 is a wall")
    kind, message = error_of(client.call("add", 1))
    assert kind == "TypeError" and "missing 1 required positional argument" in message
    kind, message = error_of(client.call("unserialisable"))
    assert kind == "TypeError" and "not JSON-serialisable" in message
    # refused at submission, in the daemon, without reaching a worker
    assert error_of(client.call("no_such_task")) == ("ValueError", "unknown task 'no_such_task'")

    ids = [client.submit("add", i, 1000) for i in range(60)]
    assert [a["result"] for a in client.wait(*ids)] == [i + 1000 for i in range(60)]
    # both workers take work: two slow tasks run side by side
    started = time.monotonic()
    answers = client.wait(client.submit("sleep", 1.0), client.submit("sleep", 1.0))
    assert time.monotonic() - started < 1.9
    assert len({a["result"]["pid"] for a in answers}) == 2
    stats = client.stats()
    assert stats["completed"] >= 64 and stats["crash_replacements"] == 0
    with urllib.request.urlopen(d.http_url + "/status", timeout=10) as resp:
        status = json.load(resp)
    assert len(status["workers"]["workers"]) == 2 and status["workers"]["completed"] >= 64
    # ... and the daemon is still an echo server for everyone else
    client.ws.send("plain text")
    assert client.ws.recv() == "plain text"


# -- supervision -----------------------------------------------------------------------


def test_sigkill_a_worker_holding_tasks(start):
    d, client = start("--workers", "1", "--worker-max-inflight", "3", ready=1)
    (old_pid,) = client.wait_for_workers(1)
    running = client.submit("sleep", 30, tag="running")
    queued = [client.submit("sleep", 0.1, tag=f"queued{i}") for i in range(2)]
    client.wait_for(lambda s: s["workers"][0]["inflight"] == 3, "3 tasks on the worker")
    os.kill(old_pid, signal.SIGKILL)

    # the running task was not idempotent: it fails; the two behind it had not started: rerun
    answer = client.wait(running, timeout=15)[0]
    assert error_of(answer)[0] == "WorkerDied"
    assert str(old_pid) in answer["error"]["message"]
    for answer in client.wait(*queued, timeout=15):
        assert answer["result"]["pid"] != old_pid
    (new_pid,) = client.wait_for_workers(1)
    assert new_pid != old_pid
    assert "killed by SIGKILL" in d.log()

    # an idempotent task is run once more on another worker
    retried = client.submit("sleep_idempotent", 1.0, tag="again")
    client.wait_for(lambda s: s["workers"] and s["workers"][0]["inflight"] == 1, "the task running")
    os.kill(new_pid, signal.SIGKILL)
    answer = client.wait(retried, timeout=20)[0]
    assert answer["result"]["tag"] == "again"
    assert answer["result"]["pid"] not in (old_pid, new_pid)
    stats = client.stats()
    assert stats["retried"] == 1 and stats["crash_replacements"] == 2


def test_task_over_its_timeout_fails_and_its_worker_is_replaced(start):
    d, client = start("--workers", "1", ready=1)
    (old_pid,) = client.wait_for_workers(1)
    started = time.monotonic()
    answer = client.call("overrun", 30, timeout=20)  # declared with timeout=1.0
    elapsed = time.monotonic() - started
    assert error_of(answer)[0] == "TaskTimeout"
    assert "within 1 s" in answer["error"]["message"]
    assert 0.9 < elapsed < 5
    wait_until(lambda: not pid_alive(old_pid), "the overrunning worker to be killed")
    (new_pid,) = client.wait_for_workers(1, exclude={old_pid})
    assert new_pid != old_pid
    assert client.call("add", 1, 1)["result"] == 2
    assert client.call("overrun", 0.1)["result"] == "finished"
    assert "ran over its 1 s timeout" in d.log()


def test_full_queue_fails_the_submission_at_once(start):
    d, client = start("--workers", "1", "--task-queue-size", "2", ready=1)
    slow = [client.submit("sleep", 1.2, tag=i) for i in range(3)]  # 1 running + 2 queued
    started = time.monotonic()
    answer = client.call("add", 1, 2)
    assert time.monotonic() - started < 1.0  # answered long before a slot frees up
    kind, message = error_of(answer)
    assert kind == "TaskQueueFull" and "--task-queue-size 2" in message
    assert [a["result"]["tag"] for a in client.wait(*slow, timeout=20)] == [0, 1, 2]
    assert client.call("add", 1, 2)["result"] == 3  # room again


def test_reload_applies_new_queue_size_and_timeout(start, tmp_path):
    config = tmp_path / "wsdaemon.conf"
    config.write_text("[wsdaemon]\ntask_queue_size = 5\n")
    d, client = start("--workers", "1", "--config", str(config), ready=1)
    slow = [client.submit("sleep", 0.5, tag=i) for i in range(3)]  # 1 running + 2 queued: room
    assert [a["result"]["tag"] for a in client.wait(*slow)] == [0, 1, 2]
    config.write_text("[wsdaemon]\ntask_queue_size = 1\ntask_timeout = 0.5\n")
    d.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: "changed: task_queue_size, task_timeout" in d.log(), "the reload")
    client.wait_for_workers(1)  # the reload also restarted the worker
    slow = [client.submit("sleep", 0.3, tag=i) for i in range(2)]
    kind, message = error_of(client.call("add", 1, 2))
    assert kind == "TaskQueueFull" and "--task-queue-size 1" in message
    assert len(client.wait(*slow)) == 2
    assert error_of(client.call("sleep", 5))[0] == "TaskTimeout"


def test_workers_stop_with_the_daemon(start):
    d, client = start("--workers", "2", ready=2)
    pids = client.wait_for_workers(2)
    client.close()
    assert d.stop() == 0
    for pid in pids:
        wait_until(lambda pid=pid: not pid_alive(pid), f"worker {pid} to exit", timeout=10)
    log = d.log()
    assert "Traceback" not in log, log


def test_workers_do_not_outlive_a_killed_daemon(start):
    d, client = start("--workers", "2", ready=2)
    pids = client.wait_for_workers(2)
    d.stop(signal.SIGKILL)
    for pid in pids:
        wait_until(lambda pid=pid: not pid_alive(pid), f"worker {pid} to exit", timeout=10)


# -- remote workers over TCP -------------------------------------------------------------


def start_remote_worker(port: int, token_file: str, env: dict | None = None) -> subprocess.Popen:
    env = {**os.environ, **(env or {})}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    return subprocess.Popen(
        [sys.executable, "-m", "wsdaemon", "worker", "--connect", f"127.0.0.1:{port}"]
        + ["--token-file", token_file, "--app", APP],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def recv_frames(sock: socket.socket, timeout: float = 10.0) -> list[dict]:
    """Every frame until the daemon closes the connection."""
    sock.settimeout(timeout)
    decoder = workerproto.FrameDecoder()
    frames = []
    while True:
        data = sock.recv(65536)
        if not data:
            return frames
        frames += decoder.feed(data)


def test_remote_worker_with_right_and_wrong_token(start, tmp_path):
    port = free_port()
    token = tmp_path / "token"
    token.write_text("correct horse battery staple\n")
    token.chmod(0o600)
    wrong = tmp_path / "wrong"
    wrong.write_text("correct horse battery stapler\n")
    version = tmp_path / "version"
    version.write_text("1")
    d, client = start(
        "--workers", "0", "--worker-listen", f"127.0.0.1:{port}", "--worker-token-file", str(token)
    )
    queued = client.submit("whoami")  # no worker yet: it waits in the queue

    # a wrong token: one "refused" frame, then the end; never a task
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        hello = {"type": "hello", "version": 1, "token": wrong.read_text().strip(), "pid": 1, "tasks": []}
        raw.sendall(workerproto.encode(hello))
        assert recv_frames(raw) == [{"type": "refused", "reason": "bad token"}]
    # a frame too large for a hello is not buffered
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        raw.sendall(struct.pack(">I", 10_000_000) + b"{")
        assert recv_frames(raw) == []
    # connections that never say hello are bounded
    silent = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(64)]
    try:
        # accepted in order: when this one is, the 64 before it are connected and silent
        extra = socket.create_connection(("127.0.0.1", port), timeout=10)
        assert recv_frames(extra) == []  # closed at once, long before the 10 s hello timeout
        extra.close()
        assert "have not said hello yet" in d.log()
    finally:
        for sock in silent:
            sock.close()
    # the worker command with a wrong token gives up with a clear message
    bad = start_remote_worker(port, str(wrong))
    out, _ = bad.communicate(timeout=30)
    assert bad.returncode == 3, out
    assert "refused" in out and "bad token" in out
    wait_until(lambda: d.log().count("bad token") >= 2, "the refusals in the daemon's log")
    assert client.stats()["workers"] == []

    good = start_remote_worker(port, str(token), env={"TASKAPP_VERSION_FILE": str(version)})
    try:
        answer = client.wait(queued, timeout=30)[0]
        assert answer["result"] == {"pid": good.pid, "version": "1"}
        assert client.call("add", 20, 22)["result"] == 42
        assert error_of(client.call("fail", "remote boom")) == ("ValueError", "remote boom")
        (worker,) = client.stats()["workers"]
        assert worker["remote"] and worker["pid"] == good.pid

        # SIGHUP: the remote worker finishes, re-executes itself (same pid), loads the new code
        version.write_text("2")
        d.proc.send_signal(signal.SIGHUP)
        client.wait_for(lambda s: s["rolling_restarts"] == 1 and not s["restarting"], "the restart")
        assert client.call("whoami", timeout=30)["result"] == {"pid": good.pid, "version": "2"}
        assert good.poll() is None
    finally:
        good.terminate()
        good.wait(10)
    assert "refused worker connection from 127.0.0.1" in d.log()


def test_remote_worker_listener_needs_a_token_file(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO)])}
    cmd = [sys.executable, "-m", "wsdaemon", "run", "--host", "127.0.0.1", "--port", "0", "--app", APP]
    cmd += ["--worker-listen", "127.0.0.1:0"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode != 0
    assert "--worker-listen needs --worker-token-file" in done.stderr
    short = tmp_path / "short"
    short.write_text("tooshort")
    done = subprocess.run(
        cmd + ["--worker-token-file", str(short)], env=env, capture_output=True, text=True, timeout=30
    )
    assert done.returncode != 0
    assert "shorter than 16 bytes" in done.stderr


# -- SIGHUP: rolling restart ----------------------------------------------------------------


def test_sighup_restarts_workers_without_losing_tasks(start, tmp_path):
    version = tmp_path / "version"
    version.write_text("1")
    d, client = start("--workers", "2", ready=2, env={"TASKAPP_VERSION_FILE": str(version)})
    old_pids = set(client.wait_for_workers(2))
    assert client.call("whoami")["result"]["version"] == "1"

    ids = [client.submit("sleep", 0.05, tag=i) for i in range(40)]
    version.write_text("2")  # new code on disk
    d.proc.send_signal(signal.SIGHUP)
    for i in range(40, 80):  # keep submitting while the workers are replaced
        ids.append(client.submit("sleep", 0.05, tag=i))
        time.sleep(0.02)
    answers = client.wait(*ids, timeout=60)
    assert [a.get("result", a)["tag"] for a in answers] == list(range(80))  # all answered, none failed
    new_pids = set(client.wait_for_workers(2, exclude=old_pids, timeout=30))
    assert not new_pids & old_pids
    assert {a["result"]["version"] for a in answers[-5:]} == {"2"}  # new code picked up
    assert client.call("whoami")["result"]["version"] == "2"
    stats = client.stats()
    assert stats["failed"] == 0 and stats["rolling_restarts"] == 1
    assert "workers restarted" in d.log()
    assert d.alive()


def test_crash_replacements_and_rolling_restarts_are_counted_apart(start):
    """kill -9 of one of two workers is one crash replacement and no rolling restart; a SIGHUP then is
    one rolling restart, and the two old workers it retires are not crash replacements. Read from
    /status and /metrics alike (the old ``worker_exits`` counted the retired workers too)."""
    from tests.support.metrics_scrape import scrape

    d, client = start("--workers", "2", ready=2)
    old_pids = set(client.wait_for_workers(2))

    def counts() -> tuple[int, int, float, float]:
        with urllib.request.urlopen(d.http_url + "/status", timeout=10) as resp:
            workers = json.load(resp)["workers"]
        samples = scrape(d.http_url)
        return (
            workers["crash_replacements"],
            workers["rolling_restarts"],
            samples[("wsdaemon_worker_crash_replacements_total", ())],
            samples[("wsdaemon_worker_rolling_restarts_total", ())],
        )

    assert counts() == (0, 0, 0, 0)
    victim = min(old_pids)
    os.kill(victim, signal.SIGKILL)
    survivors = client.wait_for_workers(2, exclude={victim}, timeout=30)
    assert victim not in survivors
    assert counts() == (1, 0, 1, 0)

    before_restart = set(survivors)
    d.proc.send_signal(signal.SIGHUP)
    client.wait_for_workers(2, exclude=before_restart, timeout=30)
    wait_until(lambda: not any(pid_alive(p) for p in before_restart), "the old workers to exit")
    wait_until(lambda: len(client.stats()["processes"]) == 2, "the retired workers reaped")
    assert counts() == (1, 1, 1, 1)


def test_sighup_with_code_that_does_not_import_keeps_the_old_workers(start, tmp_path):
    version = tmp_path / "version"
    version.write_text("1")
    d, client = start("--workers", "1", ready=1, env={"TASKAPP_VERSION_FILE": str(version)})
    (pid,) = client.wait_for_workers(1)
    version.write_text("broken")
    d.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: "worker restart stopped" in d.log(), "the restart to give up")
    assert client.call("whoami")["result"] == {"pid": pid, "version": "1"}
    version.write_text("3")
    d.proc.send_signal(signal.SIGHUP)
    (new_pid,) = client.wait_for_workers(1, exclude={pid})
    assert client.call("whoami")["result"] == {"pid": new_pid, "version": "3"}


def test_crashing_workers_restart_with_back_off_and_the_queue_waits(start, tmp_path):
    version = tmp_path / "version"
    version.write_text("broken")  # workers die at import
    d, client = start("--workers", "1", env={"TASKAPP_VERSION_FILE": str(version)})
    queued = client.submit("whoami")
    wait_until(lambda: "restarting worker slot 0 in 1.0 s" in d.log(), "a growing back-off")
    assert "restarting worker slot 0 in 0.5 s" in d.log()
    version.write_text("fixed")
    answer = client.wait(queued, timeout=20)[0]
    assert answer["result"]["version"] == "fixed"
    assert client.stats()["crash_replacements"] >= 3


# -- the loop is never blocked ----------------------------------------------------------------


def test_echo_stays_fast_while_every_worker_is_busy(start, daemon_factory):
    d, client = start("--workers", "2", ready=2)
    busy = [client.submit("spin", 3.0) for _ in range(2)]
    client.wait_for(lambda s: all(w["inflight"] == 1 for w in s["workers"]), "both workers busy", 5)
    echo = websocket.create_connection(d.url, timeout=10)
    started = time.monotonic()
    round_trips = []
    try:
        while time.monotonic() - started < 2.0:
            t0 = time.monotonic()
            echo.send(f"ping {len(round_trips)}")
            assert echo.recv() == f"ping {len(round_trips)}"
            round_trips.append(time.monotonic() - t0)
            time.sleep(0.02)
    finally:
        echo.close()
    echo_window = time.monotonic() - started
    answers = client.wait(*busy, timeout=30)
    assert all(a["result"]["iterations"] > 0 for a in answers)
    assert time.monotonic() - started > 0.8  # the tasks were still running when the echoes ended
    assert echo_window < 2.9
    assert len(round_trips) >= 20
    assert max(round_trips) < 0.25, sorted(round_trips)[-5:]
