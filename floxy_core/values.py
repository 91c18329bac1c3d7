"""What a storable value is, and how JSON travels (DECISIONS.md "Data and handlers, byte for byte").

One place decides, for both stores alike, so that a value either enters everywhere or nowhere:

* **Numbers travel exactly.** An integer is an `int` (a `Decimal` past 4,000 digits, where
  Python's int/str conversion stops); a fraction is a `float` when the float writes back as the
  same number (``0.1``, ``2.5``), else a `Decimal` (``1e400``, ``1e-400``,
  ``0.1000000000000000000001``). Nothing becomes ``Infinity`` or is rounded; `dumps` writes a
  `Decimal` as a JSON number. PostgreSQL's ``numeric`` bounds what is storable: at most
  131,072 digits before the point and 16,383 after it.
* **Text is valid Unicode.** A NUL character (in a string or a key) is refused: PostgreSQL
  cannot store it. A lone surrogate (``"\\ud800"``) is refused in input, and replaced by U+FFFD
  in handler output (``lenient``), as are invalid UTF-8 bytes, as the reference does.
* **Nesting** is bounded (`MAX_DEPTH`): deeper values would exhaust the parser's recursion.

A refused value raises `UnstorableValue` naming its JSON path (``$.items[2].name``). Only
values that look suspicious pay for the walk that finds the path: a plain document costs one C
parse (or one C serialisation for `storable`) and a few substring scans.
"""

from __future__ import annotations

import functools
import json
import math
import re
from decimal import Decimal, InvalidOperation
from typing import Any, Final

from floxy_core.errors import UnstorableValue
from floxy_core.model import JSON

__all__ = [
    "MAX_DEPTH",
    "UnstorableValue",
    "dumps",
    "loads",
    "storable",
    "text",
]

MAX_DEPTH: Final = 512
"""Nesting levels of lists and objects. Python's JSON parser and serialiser recurse once per
level (the recursion limit is 1,000, shared with the caller's frames); PostgreSQL's is higher."""

NUMERIC_MAX_INTEGER_DIGITS: Final = 131_072
"""PostgreSQL `numeric` (and so `jsonb`): digits before the decimal point."""
NUMERIC_MAX_FRACTION_DIGITS: Final = 16_383
"""PostgreSQL `numeric`: digits after the decimal point."""

_INT_DIGITS: Final = 4_000
"""Longer integers are read as `Decimal`: `int(text)` stops at 4,300 digits by default."""
_INT_BITS: Final = 13_000
"""An `int` with more bits than this (about 3,900 digits) is written through `Decimal`."""

_MARK = "\x00#"
_SPACED = (", ", ": ")


# --------------------------------------------------------------------------------------------
# Parsing


def loads(data: str | bytes, *, lenient: bool = False) -> JSON:
    """Parse one JSON document exactly.

    `lenient` is for handler output: invalid UTF-8 and lone surrogates become U+FFFD instead of
    being refused. Raises ValueError (a `json.JSONDecodeError` or `UnicodeDecodeError`) for text
    that is not JSON, `UnstorableValue` for JSON the stores cannot keep.
    """
    if isinstance(data, bytes | bytearray):
        text = bytes(data).decode("utf-8", "replace" if lenient else "strict")
    else:
        text = data
    exact: list[bool] = []

    def parse_int(digits: str) -> int | Decimal:
        if len(digits) <= _INT_DIGITS:
            return int(digits)
        exact.append(True)
        return Decimal(digits)

    def parse_float(number: str) -> float | Decimal:
        value = float(number)
        if repr(value) == number:
            return value
        try:
            written = Decimal(number)
        except InvalidOperation:  # an exponent past 10^18: far beyond what `numeric` holds
            exact.append(True)
            return Decimal("-Infinity" if number.startswith("-") else "Infinity")
        if math.isfinite(value) and Decimal(repr(value)) == written:
            return value  # 1.50, 1E2: the float writes back as the same number
        exact.append(True)
        return written

    try:
        try:  # integers at C speed; only a 4,300-digit one needs the hook
            value = json.loads(text, parse_float=parse_float, parse_constant=_no_constant)
        except ValueError as exc:
            if "integer string conversion" not in str(exc):
                raise
            value = json.loads(
                text, parse_int=parse_int, parse_float=parse_float, parse_constant=_no_constant
            )
    except RecursionError:
        raise UnstorableValue("$", f"nested deeper than {MAX_DEPTH} levels") from None
    if exact or _suspicious(text):
        value = _clean(value, [], lenient)
    return value


def _no_constant(name: str) -> JSON:
    raise ValueError(f"{name} is not valid JSON")


def _suspicious(text: str) -> bool:
    """Whether the parsed value may hold something to refuse or replace (cheap, C-speed scans):
    a `\\u0000` or `\\uD...` escape (a surrogate, or harmless U+D000-U+D7FF), a raw surrogate, or
    more brackets than `MAX_DEPTH`."""
    if "\\u0000" in text or "\\ud" in text or "\\uD" in text:
        return True
    if not text.isascii() and _has_surrogate(text):
        return True
    return text.count("[") + text.count("{") > MAX_DEPTH


@functools.cache
def _pattern(source: str) -> re.Pattern[str]:
    """Compiled on first use: `floxyctl run` imports this module and rarely needs a pattern."""
    return re.compile(source)


def _has_surrogate(text: str) -> bool:
    return _pattern("[\ud800-\udfff]").search(text) is not None


# --------------------------------------------------------------------------------------------
# Checking Python values


def storable(value: Any, *, lenient: bool = True) -> JSON:
    """`value` as the stores will keep it, or `UnstorableValue` naming what they cannot.

    For values a handler returns as Python objects (the python handler, plugins): lone
    surrogates become U+FFFD unless `lenient` is false; NUL characters, NaN, infinities,
    numbers out of `numeric`'s range, non-JSON types and excessive nesting are refused.
    """
    found: list[bool] = []

    def default(obj: object) -> object:
        if isinstance(obj, Decimal):
            found.append(True)
            return None
        raise TypeError(type(obj).__name__)

    try:
        encoded = json.dumps(value, allow_nan=False, default=default, check_circular=False)
    except (ValueError, TypeError, RecursionError):
        return _clean(value, [], lenient)
    if found or _suspicious(encoded):
        return _clean(value, [], lenient)
    return value


def _clean(value: Any, path: list[str | int], lenient: bool) -> JSON:
    """The walk that finds what to refuse or replace; containers are copied only if changed."""
    kind = type(value)
    if kind is str:
        return _string(value, path, lenient, "string")
    if value is None or kind is bool:
        return value
    if kind is int:
        if value.bit_length() > _INT_BITS:
            return _number(Decimal(value), path)
        return value
    if kind is float:
        if not math.isfinite(value):
            raise UnstorableValue(_path(path), f"{value} is not a JSON number")
        return value
    if isinstance(value, Decimal):
        return _number(value, path)
    if isinstance(value, dict):
        _nest(path)
        changed = False
        items: list[tuple[str, JSON]] = []
        for key, child in value.items():
            if not isinstance(key, str):
                raise UnstorableValue(
                    _path(path), f"object key {key!r} is a {type(key).__name__}, not a string"
                )
            path.append(key)
            new_key = _string(key, path, lenient, "key")
            new_child = _clean(child, path, lenient)
            path.pop()
            changed = changed or new_key is not key or new_child is not child
            items.append((new_key, new_child))
        return dict(items) if changed or kind is not dict else value
    if isinstance(value, list | tuple):
        _nest(path)
        changed = kind is not list
        out: list[JSON] = []
        for index, child in enumerate(value):
            path.append(index)
            new_child = _clean(child, path, lenient)
            path.pop()
            changed = changed or new_child is not child
            out.append(new_child)
        return out if changed else value
    if isinstance(value, str):  # subclasses (an enum's value, say) as plain values
        return _clean(str.__str__(value), path, lenient)
    if isinstance(value, int):
        return _clean(int(value), path, lenient)
    if isinstance(value, float):
        return _clean(float(value), path, lenient)
    raise UnstorableValue(_path(path), f"{kind.__name__} is not a JSON value")


def _nest(path: list[str | int]) -> None:
    if len(path) >= MAX_DEPTH:
        raise UnstorableValue(_path(path), f"nested deeper than {MAX_DEPTH} levels")


def _string(value: str, path: list[str | int], lenient: bool, what: str) -> str:
    if "\x00" in value:
        raise UnstorableValue(
            _path(path),
            f"{what} contains a NUL character (\\u0000), which PostgreSQL cannot store",
        )
    if value.isascii() or not _has_surrogate(value):
        return value
    if not lenient:
        raise UnstorableValue(_path(path), f"{what} contains a lone surrogate (not valid Unicode)")
    return _replace_surrogates(value)


def _replace_surrogates(value: str) -> str:
    """Pairs written as two code points join into one character; lone ones become U+FFFD."""
    return value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def _number(value: Decimal, path: list[str | int]) -> JSON:
    if not value.is_finite():
        raise UnstorableValue(_path(path), "number is too large to store")
    exponent = value.as_tuple().exponent
    assert isinstance(exponent, int)
    if value and value.adjusted() >= NUMERIC_MAX_INTEGER_DIGITS:
        raise UnstorableValue(
            _path(path),
            f"number {_short(value)} is too large to store "
            f"(at most {NUMERIC_MAX_INTEGER_DIGITS} digits before the point)",
        )
    if -exponent > NUMERIC_MAX_FRACTION_DIGITS:
        raise UnstorableValue(
            _path(path),
            f"number {_short(value)} has too many digits after the point to store "
            f"(at most {NUMERIC_MAX_FRACTION_DIGITS})",
        )
    return value


def _short(value: Decimal) -> str:
    shown = str(value)
    return shown if len(shown) <= 40 else f"{value:.6E}"


def _path(path: list[str | int]) -> str:
    """`$`, `$.a.b`, `$.items[2]`, `$["odd key"]`: keys shown as JSON (ASCII) when not plain."""
    parts = ["$"]
    for part in path:
        if isinstance(part, int):
            parts.append(f"[{part}]")
        elif part.isidentifier() and part.isascii():
            parts.append(f".{part}")
        else:
            parts.append(f"[{json.dumps(part)}]")
    return "".join(parts)


# --------------------------------------------------------------------------------------------
# Writing


def dumps(
    value: JSON, *, indent: int | None = None, spaced: bool = False, ensure_ascii: bool = False
) -> str:
    """JSON text for a value `loads` or `storable` produced: compact unless `indent` is given
    (or `spaced`: one line with Python's default `, ` and `: `), `Decimal` written as a number,
    never NaN or Infinity (ValueError instead)."""
    marked = False

    def default(obj: object) -> object:
        nonlocal marked
        if isinstance(obj, Decimal):
            if not obj.is_finite():
                raise ValueError(f"{obj} is not a JSON number")
            marked = True
            return f"{_MARK}{obj}\x00"
        if isinstance(obj, tuple):
            return list(obj)
        raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")

    out = json.dumps(
        value,
        allow_nan=False,
        ensure_ascii=ensure_ascii,
        indent=indent,
        separators=(",", ": ") if indent is not None else _SPACED if spaced else (",", ":"),
        default=default,
    )
    if marked:  # NUL is refused in stored strings, so the mark cannot come from the data
        out = _pattern(r'"\\u0000#([-+.0-9eE]+)\\u0000"').sub(r"\1", out)
    return out


def text(message: str) -> str:
    """Diagnostic text (an error, stderr) the stores can keep: NUL and lone surrogates → U+FFFD."""
    if "\x00" in message:
        message = message.replace("\x00", "\ufffd")
    if message.isascii() or not _has_surrogate(message):
        return message
    return _replace_surrogates(message)
