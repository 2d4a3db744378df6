"""The connection-rate buckets in process, with a clock the test sets: keys, refill, the table's bounds."""

from __future__ import annotations

from wsdaemon.net import ratelimit
from wsdaemon.net.ratelimit import ConnectRate, bucket_key


class Clock:
    """Stands in for the loop: only ``now`` and the timers the limiter asks for (never fired here)."""

    now = 100.0

    def call_every(self, interval, callback):
        return None

    def call_later(self, delay, callback):
        return None


def limiter(rate: float = 2.0, burst: int = 3) -> tuple[ConnectRate, Clock]:
    clock = Clock()
    return ConnectRate(clock, lambda: (rate, burst)), clock


def test_keys_ipv4_by_address_ipv6_by_64_and_mapped_ipv4_as_ipv4():
    assert bucket_key(("10.1.2.3", 5000)) == "10.1.2.3"
    assert bucket_key(("::ffff:10.1.2.3", 5000, 0, 0)) == "10.1.2.3"
    a = bucket_key(("2001:db8:1:2::1", 1, 0, 0))
    assert a == bucket_key(("2001:db8:1:2:ffff::9", 2, 0, 0))
    assert a != bucket_key(("2001:db8:1:3::1", 1, 0, 0))


def test_a_burst_then_the_rate():
    r, clock = limiter(rate=2.0, burst=3)
    assert [r.allow(("10.0.0.1", 1), 2.0, 3) for _ in range(5)] == [True, True, True, False, False]
    assert r.allow(("10.0.0.2", 1), 2.0, 3)  # another address: a bucket of its own
    clock.now += 0.5  # one token back
    assert [r.allow(("10.0.0.1", 1), 2.0, 3) for _ in range(2)] == [True, False]
    clock.now += 60  # refilled up to the burst, no more
    assert [r.allow(("10.0.0.1", 1), 2.0, 3) for _ in range(4)] == [True, True, True, False]


def test_the_table_is_bounded_and_the_sweep_drops_refilled_buckets(monkeypatch):
    monkeypatch.setattr(ratelimit, "MAX_BUCKETS", 4)
    r, clock = limiter(rate=1.0, burst=2)
    for i in range(10):
        r.allow((f"10.0.0.{i}", 1), 1.0, 2)
    assert list(r.buckets) == ["10.0.0.6", "10.0.0.7", "10.0.0.8", "10.0.0.9"]  # the oldest evicted
    clock.now += 0.5
    r.allow(("10.0.0.9", 1), 1.0, 2)  # 10.0.0.9 is down to 0.5 tokens
    clock.now += 0.6  # the others have 1 + 1.1 >= 2: full again
    r.sweep()
    assert list(r.buckets) == ["10.0.0.9"]
