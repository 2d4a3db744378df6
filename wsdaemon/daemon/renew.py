"""Fresh objects for the daemon's long-lived numbers, so that a crowd's pymalloc arenas can be unmapped.

CPython's small-object allocator unmaps a 1 MiB arena only when every block in it is free. While a
crowd of clients is connected, every new object goes to the arenas the crowd made: the counters
bumped on each open and close, the timers' next times, the loop's clock. Once the crowd has left,
those few numbers are all that keeps a dozen arenas mapped (docs/performance.md, Memory handed
back). :func:`renew_numbers` replaces each with an equal, newly allocated object; the old one is
freed and its arena can go.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

#: How deep below a root the walk goes (server -> component -> table -> entry -> its attributes).
MAX_DEPTH = 6
#: CPython keeps one float free list of this many; a float freed while it is full goes back to pymalloc.
FLOAT_FREE_LIST = 100
_SMALL_INTS = range(-5, 257)


def _ours(obj: Any) -> bool:
    return type(obj).__module__.startswith("wsdaemon.")


def _is_renewable(value: Any) -> bool:
    kind = type(value)
    return kind is float or (kind is int and value not in _SMALL_INTS)


def long_lived_numbers(roots: list[Any]) -> list[tuple[Any, Any, Any]]:
    """``(holder, key, value)`` for every float and non-cached int held by the daemon's own objects.

    The walk follows the attributes of instances of wsdaemon classes, dict values, list items and
    module globals, from ``roots``. It does not enter sets (the tables of connections and
    descriptors) nor objects of other libraries; a tuple is entered but not changed.
    """
    found: list[tuple[Any, Any, Any]] = []
    seen: set[int] = set()
    stack: list[tuple[Any, int]] = [(root, 0) for root in roots]
    while stack:
        obj, depth = stack.pop()
        if id(obj) in seen or depth > MAX_DEPTH:
            continue
        seen.add(id(obj))
        if isinstance(obj, ModuleType):
            items: Any = vars(obj).items()
        elif type(obj) is dict:
            items = obj.items()
        elif type(obj) is list:
            items = enumerate(obj)
        elif type(obj) is tuple:
            stack.extend((item, depth + 1) for item in obj if not _is_renewable(item))
            continue
        elif _ours(obj):
            items = _attributes(obj)
        else:
            continue
        settable = type(obj).__setattr__ is object.__setattr__  # not a frozen dataclass
        for key, value in list(items):
            if _is_renewable(value):
                if settable:
                    found.append((obj, key, value))
            elif type(value) in (dict, list, tuple) or _ours(value):
                stack.append((value, depth + 1))
    return found


def _attributes(obj: Any) -> list[tuple[str, Any]]:
    out = list(vars(obj).items()) if hasattr(obj, "__dict__") else []
    for cls in type(obj).__mro__:
        for name in cls.__dict__.get("__slots__", ()):
            if name not in ("__dict__", "__weakref__") and hasattr(obj, name):
                out.append((name, getattr(obj, name)))
    return out


def renew_numbers(roots: list[Any]) -> int:
    """Replace every long-lived number under ``roots`` by an equal new object; how many were replaced.

    Run it right after a full ``gc.collect()``, which empties the float free list: the new objects
    then come from the allocator's current pools, and all of them are made before any old one is
    freed. The float free list is filled with spare floats first, so that the old floats, freed
    while it is full, go back to pymalloc instead of being handed out again.
    """
    found = long_lived_numbers(roots)
    fresh = [value * 1.0 if type(value) is float else value + 0 for _, _, value in found]
    spare = [float(n) + 0.5 for n in range(FLOAT_FREE_LIST)]
    del spare  # now on the free list
    for (holder, key, _), value in zip(found, fresh, strict=True):
        if type(holder) in (dict, list):
            holder[key] = value
        else:
            setattr(holder, key, value)  # an instance or a module
    return len(found)
