"""Deadlines: on_deadline once per watch, after the deadline, from one timer of the loop."""

import time

from wsdaemon.net.deadlines import Deadlines
from wsdaemon.net.loop import EventLoop


class Timed:
    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.calls: list[float] = []

    def on_deadline(self, now: float) -> None:
        self.calls.append(now)


def test_only_passed_deadlines_run_and_each_once_per_watch():
    deadlines = Deadlines(EventLoop())
    now = time.monotonic()
    due, later = Timed(now - 1), Timed(now + 60)
    deadlines.watch(due)
    deadlines.watch(later)
    deadlines.sweep()
    deadlines.sweep()
    assert len(due.calls) == 1 and later.calls == []
    assert due not in deadlines and later in deadlines and len(deadlines) == 1


def test_unwatch_forgets_and_a_new_watch_runs_again():
    deadlines = Deadlines(EventLoop())
    conn = Timed(0.0)
    deadlines.watch(conn)
    deadlines.unwatch(conn)
    deadlines.unwatch(conn)
    deadlines.sweep()
    assert conn.calls == []
    deadlines.watch(conn)
    deadlines.sweep()
    assert len(conn.calls) == 1


def test_a_connection_may_watch_itself_again_from_on_deadline():
    deadlines = Deadlines(EventLoop())

    class Rearming(Timed):
        def on_deadline(self, now):
            super().on_deadline(now)
            if len(self.calls) == 1:
                self.deadline = 0.0
                deadlines.watch(self)

    conn = Rearming(0.0)
    deadlines.watch(conn)
    deadlines.sweep()
    assert len(conn.calls) == 1 and conn in deadlines
    deadlines.sweep()
    assert len(conn.calls) == 2 and conn not in deadlines


def test_the_loop_timer_sweeps_until_stopped():
    loop = EventLoop()
    deadlines = Deadlines(loop, interval=0.01)
    deadlines.start()
    deadlines.start()  # one timer, however often started
    conn = Timed(time.monotonic() + 0.03)
    deadlines.watch(conn)
    loop.call_later(0.1, loop.stop)
    loop.run()
    assert len(conn.calls) == 1 and conn.calls[0] >= conn.deadline
    deadlines.stop()
    conn.deadline = 0.0
    deadlines.watch(conn)
    loop.call_later(0.05, loop.stop)
    loop.run()
    loop.close()
    assert len(conn.calls) == 1
