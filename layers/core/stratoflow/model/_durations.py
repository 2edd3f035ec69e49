"""Durations as the workflow format writes them: ``30s``, ``5m``, ``1h``, ``2d`` or integer seconds."""

from __future__ import annotations

import re
from datetime import timedelta

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd])\s*$")


def parse_duration(value: object) -> timedelta:
    """Parse a duration; raise ``ValueError`` naming the bad value."""
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, bool):  # bool is an int subclass; `timeout: true` is a mistake
        raise ValueError(f"invalid duration {value!r}: use 30s, 5m, 1h, 1d or whole seconds")
    elif isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip()
        if text.isdigit():
            seconds = float(text)
        else:
            match = _PATTERN.match(text)
            if match is None:
                raise ValueError(
                    f"invalid duration {value!r}: use 30s, 5m, 1h, 1d or whole seconds"
                )
            seconds = float(match.group(1)) * _UNITS[match.group(2)]
    else:
        raise ValueError(f"invalid duration {value!r}: use 30s, 5m, 1h, 1d or whole seconds")
    if seconds < 0:
        raise ValueError(f"invalid duration {value!r}: must not be negative")
    return timedelta(seconds=seconds)


def format_duration(delta: timedelta) -> str:
    """The shortest exact spelling of ``delta`` in the format's units (``90s``, ``5m``, ``1h``)."""
    seconds = delta.total_seconds()
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"
