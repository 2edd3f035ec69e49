"""Durations as the workflow format writes them: ``30s``, ``5m``, ``1h``, ``2d`` or integer seconds."""

from __future__ import annotations

import math
import re
from datetime import timedelta

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
# ASCII digits only (\d would take other scripts' digits)
_PATTERN = re.compile(r"\s*([0-9]+)(\.[0-9]+)?\s*([smhd])?\s*")
MAX_DURATION = timedelta(days=365)
"""The longest duration a workflow may name (timeouts, delays, intervals): a year."""
_HINT = "use 30s, 5m, 1h, 1d or whole seconds"


def parse_duration(value: object) -> timedelta:
    """Parse a duration of at most :data:`MAX_DURATION`; raise ``ValueError`` naming the bad
    value and the limit."""
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, bool):  # bool is an int subclass; `timeout: true` is a mistake
        raise ValueError(f"invalid duration {value!r}: {_HINT}")
    elif isinstance(value, int):  # compared as an int: a huge one does not fit a float
        seconds = (
            value if abs(value) <= 2 * _MAX_SECONDS else (math.inf if value > 0 else -math.inf)
        )
    elif isinstance(value, float):
        if math.isnan(value):
            raise ValueError(f"invalid duration {value!r}: not a number")
        seconds = value
    elif isinstance(value, str):
        match = _PATTERN.fullmatch(value)
        if match is None:
            raise ValueError(f"invalid duration {_shown(value)}: {_HINT}")
        whole, fraction, unit = match.groups()
        if len(whole) > 15:  # float() of a 400-digit number is infinite
            seconds = math.inf
        else:
            seconds = float(whole + (fraction or "")) * _UNITS[unit or "s"]
    else:
        raise ValueError(f"invalid duration {_shown(value)}: {_HINT}")
    if seconds < 0:
        raise ValueError(f"invalid duration {_shown(value)}: must not be negative")
    if seconds > _MAX_SECONDS:
        raise ValueError(
            f"duration {_shown(value)} is too long: at most {format_duration(MAX_DURATION)}"
        )
    return timedelta(seconds=seconds)


_MAX_SECONDS = MAX_DURATION.total_seconds()


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:30] + "..."


def format_duration(delta: timedelta) -> str:
    """The shortest exact spelling of ``delta`` in the format's units (``90s``, ``5m``, ``1h``)."""
    seconds = delta.total_seconds()
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"
