"""Byte sizes (``256k``, ``8M``, ``1G``) and durations (``500ms``, ``30s``, ``2m``): one parser and one format per kind.

Sizes use binary multiples (k = 1024, M = 1024², G = 1024³); a plain number is
bytes. A plain duration is seconds. :func:`format_size` and
:func:`format_duration` give back the shortest text the parsers accept.
"""

from __future__ import annotations

import math
import re

SIZE_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}
DURATION_UNITS = {"ms": 0.001, "": 1, "s": 1, "m": 60, "h": 3600}

SIZE_HELP = "bytes, or with k, M, G (k=1024): 256k, 8M, 1G"
DURATION_HELP = "seconds, or with ms, s, m, h: 500ms, 30s, 2m"

_SIZE = re.compile(r"(-?\d+)\s*([kmg]?)(?:i?b)?", re.I)
_DURATION = re.compile(r"(-?\d+(?:\.\d*)?|-?\.\d+)\s*(ms|s|m|h|)", re.I)


def parse_size(text: str) -> int:
    """``'256k'`` → 262144; ValueError for anything else than a whole number and a unit."""
    m = _SIZE.fullmatch(text.strip())
    if not m:
        raise ValueError(f"{text!r} is not a valid size ({SIZE_HELP})")
    return int(m.group(1)) * SIZE_UNITS[m.group(2).lower()]


def parse_duration(text: str) -> float:
    """``'500ms'`` → 0.5 seconds; ValueError for anything else than a number and a unit."""
    m = _DURATION.fullmatch(text.strip())
    if not m:
        raise ValueError(f"{text!r} is not a valid duration ({DURATION_HELP})")
    return float(m.group(1)) * DURATION_UNITS[m.group(2).lower()]


def format_size(value: int) -> str:
    for unit, factor in (("G", 1024**3), ("M", 1024**2), ("k", 1024)):
        if value and value % factor == 0:
            return f"{value // factor}{unit}"
    return str(value)


def format_duration(value: float) -> str:
    if value == 0:
        return "0"
    if value == int(value):
        seconds = int(value)
        for unit, factor in (("h", 3600), ("m", 60)):
            if seconds % factor == 0:
                return f"{seconds // factor}{unit}"
        return f"{seconds}s"
    ms = value * 1000
    if value < 1 and math.isclose(ms, round(ms)):
        return f"{round(ms)}ms"
    return f"{value:g}s"
