"""Durations as users write them, one grammar for every front end (YAML, CLI flags, floxyd's
settings, `--since`): an integer is milliseconds (the reference's YAML); a string is one or more
number-unit parts, Go's `time.ParseDuration` forms plus days (`250ms`, `2s`, `1m30s`, `7d`), or
`0`. A bare number in a string is refused: `30` could mean 30 ms or 30 s. The workflow JSON
Schema's pattern is `DURATION_PATTERN` (a test holds them together)."""

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

_UNITS_MS = {
    "ns": 0.000001,
    "us": 0.001,
    "µs": 0.001,
    "ms": 1.0,
    "s": 1000.0,
    "m": 60_000.0,
    "h": 3_600_000.0,
    "d": 86_400_000.0,
}
_UNIT = "(?:ns|us|µs|ms|s|m|h|d)"
DURATION_PATTERN: Final = f"^(0|([0-9]+(\\.[0-9]+)?{_UNIT})+)$"
"""A duration string, as a JSON Schema `pattern` (the schema's, verbatim)."""
_PART = re.compile(f"(\\d+(?:\\.\\d+)?)({_UNIT})")


def parse_duration_ms(value: object, *, what: str = "duration") -> int:
    """Milliseconds for `250` (an int), `"250ms"`, `"2s"`, `"1m30s"`, `"7d"`; `InputError`
    otherwise, saying what was wrong."""
    return round(_parse_ms(value, what))


def parse_seconds(value: object, *, what: str = "duration") -> float:
    """The same grammar in seconds, unrounded (`"500us"` is 0.0005): floxyd's settings."""
    return _parse_ms(value, what) / 1000.0


def _parse_ms(value: object, what: str) -> float:
    if isinstance(value, bool):
        raise InputError(f"invalid {what}: {value!r} (expected milliseconds or e.g. 250ms, 2s, 5m)")
    if isinstance(value, int):
        if value < 0:
            raise InputError(f"invalid {what}: {value} (must not be negative)")
        return float(value)
    if isinstance(value, float) and value.is_integer() and value >= 0:
        return value
    if not isinstance(value, str):
        raise InputError(f"invalid {what}: {value!r} (expected milliseconds or e.g. 250ms, 2s, 5m)")
    text = value.strip()
    if not text:
        raise InputError(f"invalid {what}: empty duration")
    if text == "0":
        return 0.0
    if re.fullmatch(r"\d+(\.\d+)?", text):
        raise InputError(f"invalid {what}: {value!r} needs a unit, e.g. {text}ms or {text}s")
    pos = 0
    total = 0.0
    for match in _PART.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNITS_MS[match.group(2)]
        pos = match.end()
    if pos != len(text) or pos == 0:
        raise InputError(
            f"invalid {what}: {value!r} (expected a number with a unit: 250ms, 2s, 5m, 1h, 7d)"
        )
    return total


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
