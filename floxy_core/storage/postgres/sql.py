"""Named SQL blocks, read once from `queries.sql` (the store) and `migrations.sql` (bookkeeping
of the migrations)."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

_NAME = re.compile(r"^-- name: (\w+)\s*$", re.MULTILINE)


@cache
def blocks(filename: str) -> dict[str, str]:
    """The `-- name: X` blocks of one `.sql` file beside this module."""
    text = (Path(__file__).with_name(filename)).read_text(encoding="utf-8")
    parts = _NAME.split(text)
    return {name: body.strip() for name, body in zip(parts[1::2], parts[2::2], strict=True)}


def queries() -> dict[str, str]:
    return blocks("queries.sql")


def q(name: str) -> str:
    return queries()[name]
