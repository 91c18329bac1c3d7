"""A validated workflow document, and what reading one needs without the YAML loader.

A cache hit (`spec/cache.py`) goes from file bytes to `Document` to the compiler without
importing the loader, ruamel.yaml or jsonschema.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from floxy_core.errors import SpecError, ValidationError
from floxy_core.model import RetryStrategy
from floxy_core.records import field, record

PathT = tuple[str | int, ...]
Pos = tuple[int, int]

RETRY_STRATEGIES = (*(s.value for s in RetryStrategy), "")
"""What `retry_strategy` may say; any other string is taken as fixed, with a warning, because
the reference silently treats it so (and reference files must load unchanged)."""


def format_path(path: PathT) -> str:
    """`("flows", 0, "steps", 2, "handler")` → `"flows[0].steps[2].handler"`."""
    out: list[str] = []
    for part in path:
        if isinstance(part, int):
            out.append(f"[{part}]")
        else:
            out.append(f".{part}" if out else part)
    return "".join(out)


@record(frozen=True)
class Document:
    """A workflow file that passed every check, with the position of each of its nodes."""

    path: str
    data: dict[str, Any]
    warnings: tuple[SpecError, ...] = ()
    _values: Mapping[PathT, Pos] = field(default_factory=dict, repr=False, compare=False)
    _keys: Mapping[PathT, Pos] = field(default_factory=dict, repr=False, compare=False)

    def where(self, path: PathT) -> Pos:
        """1-based (line, column) of the node at `path`, or of its nearest recorded ancestor."""
        return _lookup(self._values, path)

    def where_key(self, path: PathT) -> Pos:
        """Like `where`, but for a mapping entry points at its key rather than its value."""
        return self._keys.get(path) or _lookup(self._values, path)

    def error(self, path: PathT, message: str) -> SpecError:
        """A SpecError at `path` of this document (for later stages such as the compiler)."""
        line, col = self.where(path)
        return SpecError(self.path, line, col, format_path(path), message)


def _lookup(table: Mapping[PathT, Pos], path: PathT) -> Pos:
    for end in range(len(path), -1, -1):
        pos = table.get(path[:end])
        if pos is not None:
            return pos
    return (1, 1)


def read_source(name: str) -> bytes:
    """The bytes of a workflow file, or a ValidationError saying why it cannot be read."""
    try:
        return Path(name).read_bytes()
    except FileNotFoundError:
        raise single_error(name, "file not found") from None
    except IsADirectoryError:
        raise single_error(name, "is a directory, not a file") from None
    except PermissionError:
        raise single_error(name, "permission denied") from None
    except OSError as exc:
        raise single_error(name, f"cannot read file: {exc.strerror or exc}") from None


def single_error(path: str, message: str) -> ValidationError:
    return ValidationError([SpecError(path, 1, 1, "", message)])


def expression_key(step: Mapping[str, Any]) -> str:
    """Which key holds a condition's expression: `expr` when it is not empty, else its alias
    `condition` (the reference's "expr wins" only applies to a non-empty expr)."""
    expr = step.get("expr")
    if "condition" in step and (expr is None or expr == ""):
        return "condition"
    return "expr"
