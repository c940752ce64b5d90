"""Durations written by people: `90`, `1.5`, `"500ms"`, `"30s"`, `"10m"`, `"2h"`, `"1h30m"`."""

from __future__ import annotations

import math
import re

__all__ = ["format_duration", "parse_duration"]

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_EXPECTED = "expected seconds, or a number with a unit: 500ms, 30s, 10m, 2h, 1h30m"


def parse_duration(value: str | int | float) -> float:
    """Seconds; ValueError with a readable message for anything else or a negative value."""
    if isinstance(value, bool):
        raise ValueError(f"invalid duration {value!r} ({_EXPECTED})")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        seconds = _parse_text(value.strip().lower())
    else:
        raise ValueError(f"invalid duration {value!r} ({_EXPECTED})")
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"invalid duration {value!r}: must be a finite number >= 0")
    return seconds


def _parse_text(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        pass
    total, position = 0.0, 0
    for match in _PART.finditer(text):
        if match.start() != position:
            break
        total += float(match[1]) * _UNITS[match[2]]
        position = match.end()
    if not text or position != len(text):
        raise ValueError(f"invalid duration {text!r} ({_EXPECTED})")
    return total


def format_duration(seconds: float) -> str:
    """Short human form: 0.5 -> "500ms", 90 -> "1m30s", 7200 -> "2h"."""
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    if seconds < 60:
        return f"{seconds:g}s"
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [(hours, "h"), (minutes, "m"), (secs, "s")]
    return "".join(f"{n}{unit}" for n, unit in parts if n) or "0s"
