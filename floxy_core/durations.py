"""Durations as users write them: integer milliseconds (reference) or strings with a unit."""

from __future__ import annotations

import re
from typing import Final

from floxy_core.errors import InputError

MAX_DURATION_MS: Final = 30 * 24 * 3_600_000
"""Longest `delay`, `retry_delay`, `retry_max_delay` or `timeout` (30 days), and the cap of a
computed back-off: a due time must stay a date both stores can write."""
RETRY_AFTER_CAP_MS: Final = 3_600_000
"""Longest wait a callee's `Retry-After` may ask for (1 hour) when the step sets no
`retry_max_delay`; a step that does is capped by it instead."""
MAX_RETRIES: Final = 1000
"""Largest `max_retries`: retry counts live in 32-bit integer columns, and a thousand attempts
is already far past any useful retry policy."""

_UNITS_MS = {"ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0, "us": 0.001, "µs": 0.001}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|us|µs|s|m|h)")


def parse_duration_ms(value: object, *, what: str = "duration") -> int:
    """Milliseconds for `250`, `"250ms"`, `"2s"`, `"1m30s"`, `"1h"`; `InputError` otherwise.

    Go's `time.ParseDuration` forms are accepted so the reference's CLI flags keep working.
    """
    if isinstance(value, bool):
        raise InputError(f"invalid {what}: {value!r} (expected milliseconds or e.g. 250ms, 2s, 5m)")
    if isinstance(value, int):
        if value < 0:
            raise InputError(f"invalid {what}: {value} (must not be negative)")
        return value
    if isinstance(value, float) and value.is_integer() and value >= 0:
        return int(value)
    if not isinstance(value, str):
        raise InputError(f"invalid {what}: {value!r} (expected milliseconds or e.g. 250ms, 2s, 5m)")
    text = value.strip()
    if not text:
        raise InputError(f"invalid {what}: empty duration")
    if text.isdigit():
        return int(text)
    if text == "0":
        return 0
    pos = 0
    total = 0.0
    for match in _PART.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNITS_MS[match.group(2)]
        pos = match.end()
    if pos != len(text) or pos == 0:
        raise InputError(
            f"invalid {what}: {value!r} (expected milliseconds or a number with a unit: "
            "250ms, 2s, 5m, 1h)"
        )
    return round(total)


def format_ms(ms: int | float | None) -> str:
    """Short human form: `850ms`, `2.5s`, `3m05s`."""
    if ms is None:
        return "-"
    if ms < 1000:
        return f"{int(ms)}ms"
    seconds = ms / 1000
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, sec = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{sec:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"
