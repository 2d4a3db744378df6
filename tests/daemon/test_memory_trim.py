"""MemoryTrim's rule on a real (unstarted) Server: when it trims, and when it must not."""

from __future__ import annotations

import pytest

from wsdaemon.application import Application
from wsdaemon.daemon import malloc_tuning
from wsdaemon.daemon.malloc_tuning import MIN_PEAK, MemoryTrim
from wsdaemon.server import Server
from wsdaemon.settings import Settings


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def server():
    server = Server(Application(), Settings())
    yield server
    server.loop.close()


def make_trim(server, clock):
    calls: list[int] = []
    trim = MemoryTrim(server, malloc_trim=lambda pad: calls.append(pad) or 1, clock=clock)
    return trim, calls


def hold(server, count: int) -> None:
    server.connections.clear()
    server.connections.update(object() for _ in range(count))


def run_due(loop) -> None:
    """Run what the loop has due now: the trim comes a turn after the check that decided it."""
    for _ in range(2):
        soon, loop._soon = loop._soon, []
        for callback, args in soon:
            callback(*args)


def step(trim, clock, server, count: int, seconds: float = 1.0) -> None:
    hold(server, count)
    clock.now += seconds
    trim.check()
    run_due(server.loop)


def test_trims_once_when_the_crowd_has_left(server, clock):
    trim, calls = make_trim(server, clock)
    for count in (100, 2000, 4000, 4000, 3000, 1000):  # still leaving: no trim mid-way
        step(trim, clock, server, count)
    assert calls == []
    step(trim, clock, server, 1000)  # stopped falling at a quarter of the peak
    assert calls == [0] and trim.trims == 1
    assert trim.last_trim["peak"] == 4000 and trim.last_trim["held"] == 1000
    for _ in range(10):
        step(trim, clock, server, 1000)
    assert trim.trims == 1, "the peak since the last trim is now 1000: nothing more to give back"


def test_no_trim_under_the_minimum_peak_or_above_half(server, clock):
    trim, calls = make_trim(server, clock)
    for count in (MIN_PEAK - 1, 0, 0, 0):
        step(trim, clock, server, count)
    assert calls == []
    for count in (MIN_PEAK * 4, MIN_PEAK * 2 + 1, MIN_PEAK * 2 + 1):
        step(trim, clock, server, count)
    assert calls == []


def test_at_most_one_trim_per_interval(server, clock):
    trim, calls = make_trim(server, clock)
    for count in (8000, 4000, 4000):
        step(trim, clock, server, count)
    assert trim.trims == 1
    step(trim, clock, server, 8000, 0.5)
    step(trim, clock, server, 0, 0.5)
    step(trim, clock, server, 0, 0.5)
    assert trim.trims == 1, "rate-limited"
    step(trim, clock, server, 0, malloc_tuning.MIN_TRIM_INTERVAL)
    assert trim.trims == 2


def test_admitted_sockets_count_too(server, clock):
    trim, calls = make_trim(server, clock)
    server.admission.clients.update(range(5000))
    trim.check()
    server.admission.clients.clear()
    step(trim, clock, server, 0)
    step(trim, clock, server, 0)
    assert trim.trims == 1
    assert len(server.admission.clients) == 0


def test_turned_off_by_the_setting(server, clock):
    from dataclasses import replace

    server.settings = replace(server.settings, memory_trim=False)
    trim, calls = make_trim(server, clock)
    for count in (8000, 0, 0, 0):
        step(trim, clock, server, count)
    assert calls == [] and trim.trims == 0


def test_the_trim_keeps_every_connection(server, clock):
    trim, _ = make_trim(server, clock)
    hold(server, 3000)
    kept = set(server.connections)
    trim.trim(len(kept))
    assert server.connections == kept
    assert trim.stats()["trims"] == 1 and trim.stats()["malloc_trim"] is True


def test_glibc_malloc_trim_is_found():
    assert malloc_tuning._libc_malloc_trim() is not None


def test_the_trim_runs_at_the_next_turn_of_the_loop(server, clock):
    """Not from the timer that decided it: the woken loop has let go of the last handler it served."""
    trim, calls = make_trim(server, clock)
    for count in (4000, 1000):
        step(trim, clock, server, count)
    hold(server, 1000)
    clock.now += 1
    trim.check()
    assert calls == [] and trim._due
    trim.check()  # a check meanwhile does not schedule a second one
    run_due(server.loop)
    assert calls == [0] and trim.trims == 1 and not trim._due


def test_the_trim_renews_the_daemons_numbers(server, clock):
    trim, _ = make_trim(server, clock)
    server.slow_consumers = 123456
    before = server.slow_consumers
    trim.trim(0)
    assert server.slow_consumers == before and server.slow_consumers is not before
    assert trim.last_trim["renewed"] > 10
