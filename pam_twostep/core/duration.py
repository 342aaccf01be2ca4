"""Durations as people write them in YAML and on the command line: ``90d``, ``1h``, ``30``.

One parser for every place a lifetime is read, so ``--expires 90d`` and
``device_lifetime: 90d`` can never disagree.
"""

from __future__ import annotations

import re

__all__ = ["format_duration", "parse_duration"]

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_PATTERN = re.compile(r"([0-9]{1,10})([smhdw]?)")
# A hundred years: long enough for "forever" by hand, short enough to stay an int everywhere.
_MAX_SECONDS = 100 * 365 * 86400


def parse_duration(value: object) -> int:
    """Return whole seconds; raise ``ValueError`` with a sentence a user can act on."""
    if isinstance(value, bool):
        raise ValueError("a duration must be a number of seconds or like 30s, 15m, 1h, 30d, 2w")
    if isinstance(value, int):
        seconds = value
    elif isinstance(value, str):
        match = _PATTERN.fullmatch(value.strip().lower())
        if match is None:
            raise ValueError(
                f"{value[:40]!r} is not a duration: write seconds, or like 30s, 15m, 1h, 30d, 2w"
            )
        seconds = int(match.group(1)) * _UNITS[match.group(2) or "s"]
    else:
        raise ValueError("a duration must be a number of seconds or like 30s, 15m, 1h, 30d, 2w")
    if seconds < 0:
        raise ValueError("a duration cannot be negative")
    if seconds > _MAX_SECONDS:
        raise ValueError("a duration cannot exceed 100 years")
    return seconds


def format_duration(seconds: int) -> str:
    """The largest unit that divides evenly, so what is printed parses back to the same."""
    if seconds == 0:
        return "0s"
    for unit in ("w", "d", "h", "m"):
        if seconds % _UNITS[unit] == 0:
            return f"{seconds // _UNITS[unit]}{unit}"
    return f"{seconds}s"
