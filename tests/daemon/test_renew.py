"""renew_numbers: the daemon's long-lived numbers get equal, fresh objects (daemon/renew.py)."""

from __future__ import annotations

import sys
from dataclasses import dataclass

from wsdaemon.daemon.renew import long_lived_numbers, renew_numbers
from wsdaemon.net.loop import TimerHandle


@dataclass(frozen=True)
class Frozen:
    size: int = 100000


class Holder:
    """Stands for a wsdaemon object (renew only enters the package's own classes)."""

    __module__ = "wsdaemon.test"

    def __init__(self) -> None:
        self.count = 700000
        self.when = 12345.678
        self.small = 7
        self.flag = True
        self.table = {"a": 800000, "b": [900000, 1.5]}
        self.members = {100001, 100002}
        self.frozen = Frozen()
        self.other = Foreign()


class Foreign:
    def __init__(self) -> None:
        self.count = 600000


def test_renews_attributes_dicts_lists_and_slots():
    holder = Holder()
    timer = TimerHandle(5000.25, 1000, print, (), 1.0)
    holder.timer = timer
    old = (
        holder.count,
        holder.when,
        holder.table["a"],
        holder.table["b"][0],
        holder.table["b"][1],
        timer.when,
    )
    renewed = renew_numbers([holder])
    new = (
        holder.count,
        holder.when,
        holder.table["a"],
        holder.table["b"][0],
        holder.table["b"][1],
        timer.when,
    )
    assert new == old
    assert all(a is not b for a, b in zip(new, old, strict=True))
    assert renewed == len(long_lived_numbers([holder])) >= 8


def test_leaves_alone_what_it_must_not_touch():
    holder = Holder()
    members, frozen_size, foreign = holder.members, holder.frozen.size, holder.other.count
    found = {(type(h).__name__, k) for h, k, _ in long_lived_numbers([holder])}
    assert ("Holder", "small") not in found and ("Holder", "flag") not in found  # cached ints, bools
    renew_numbers([holder])
    assert holder.members is members  # sets (the tables of connections) are not entered
    assert holder.frozen.size is frozen_size  # a frozen dataclass is not written to
    assert holder.other.count is foreign  # nor another library's object


def test_walks_the_package_modules():
    module = sys.modules["wsdaemon.net.counters"]
    module.REFUSED[599] = 1000001
    before = module.REFUSED[599]
    renew_numbers([module])
    assert module.REFUSED[599] == before and module.REFUSED[599] is not before
    del module.REFUSED[599]
