"""Load a workflow YAML file into plain data, reporting every problem at its line and column.

Three stages, each only looking at what the previous one let through:

1. YAML → plain Python (dict/list/str/int/float/bool/None), recording the position of every
   node so later stages can point at it. Syntax errors and duplicate keys stop here.
2. JSON Schema (`schemas/workflow.schema.json`); jsonschema's errors are translated into short
   messages at the best node (the key for an unknown key, the mapping for a missing one).
3. Checks a schema cannot express: duplicate and reserved names, undeclared handlers, condition
   syntax, block sizes.

The data is returned as written (aliases such as `save_point` or `condition:` are *not*
normalised): the compiler reads the raw shapes.
"""

from __future__ import annotations

import datetime as _dt
import functools
import json
import math
import os
import re
import warnings
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from floxy_core.durations import MAX_DURATION_MS, parse_duration_ms
from floxy_core.errors import ConditionError, InputError, SpecError, ValidationError
from floxy_core.model import ROOT, VIRTUAL_PREFIX, default_join_name
from floxy_core.records import record
from floxy_core.resources import schema_path
from floxy_core.spec.cache import script_exists, script_file, url_references
from floxy_core.spec.document import (
    RETRY_STRATEGIES,
    Document,
    PathT,
    Pos,
    expression_key,
    format_path,
    read_source,
)

if TYPE_CHECKING:
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import ValidationError as SchemaError

__all__ = [
    "Document",
    "format_path",
    "load_document",
    "load_file",
]

MAX_NODES = 100_000
"""Cap on converted nodes, so alias bombs ("billion laughs") fail fast instead of eating memory."""
MAX_DEPTH = 64
"""Cap on nesting; deeper documents are not workflows and would exhaust the recursion limit."""

STEP_TYPES = ("task", "parallel", "condition", "savepoint", "fork", "human")
_RESERVED_ROOT = ROOT
_RESERVED_PREFIX = VIRTUAL_PREFIX
_DURATION_HINT = "use milliseconds or 250ms, 2s, 5m, 1h"


# --------------------------------------------------------------------------------------------
# Entry points


def load_file(path: str | os.PathLike[str], *, require_handlers: bool = True) -> Document:
    """Read and load `path`; an unreadable file is a ValidationError with one error at 1:1."""
    name = os.fspath(path)
    return load_source(read_source(name), name, require_handlers=require_handlers)


def load_source(raw: bytes, name: str, *, require_handlers: bool = True) -> Document:
    """Decode (UTF-8, optional BOM) and load the bytes of a workflow file."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line, col = _offset_pos(raw, exc.start)
        err = SpecError(
            name,
            line,
            col,
            "",
            f"not valid UTF-8 (byte 0x{raw[exc.start]:02x} at offset {exc.start})",
        )
        raise ValidationError([err]) from None
    return load_document(text.removeprefix("\ufeff"), name, require_handlers=require_handlers)


def load_document(text: str, path: str = "<string>", *, require_handlers: bool = True) -> Document:
    """Parse and check `text`; raises ValidationError listing every problem found."""
    errors: list[SpecError] = []
    root = _parse_yaml(text, path, errors)
    if errors:
        raise ValidationError(errors)
    conv = _Converter(path)
    try:
        data = conv.convert(root, ())
    except _TooBig as exc:
        raise ValidationError([SpecError(path, exc.line, exc.col, "", exc.message)]) from None
    errors.extend(conv.errors)
    if data is None:
        errors.append(
            SpecError(path, 1, 1, "", 'the file is empty (expected a mapping with a "flows" list)')
        )
        raise ValidationError(errors)
    doc = Document(path, data if isinstance(data, dict) else {}, (), conv.values, conv.keys)
    if not isinstance(data, dict):
        errors.append(doc.error((), f"expected a mapping at the top level, got {_show(data)}"))
        raise ValidationError(errors)
    warns: list[SpecError] = []
    lenient = _unknown_retry_strategies(data)
    warns.extend(
        doc.error(
            at, f"unknown retry_strategy {_show(value)} is treated as fixed ({_STRATEGY_HINT})"
        )
        for at, value in lenient
    )
    checked = doc
    if lenient:  # the schema sees "fixed" there; the document keeps what the user wrote
        patched: Any = data
        for at, _value in lenient:
            patched = _replaced(patched, at, "fixed")
        checked = Document(path, patched, (), conv.values, conv.keys)
    try:
        errors.extend(_schema_errors(checked))
    except RecursionError:  # unreachable within MAX_DEPTH; a guard, not a feature
        errors.append(SpecError(path, 1, 1, "", "document nested too deeply to validate"))
        raise ValidationError(errors) from None
    _Semantics(doc, errors, warns if not require_handlers else errors, warns).run()
    errors.extend(
        doc.error(at, f"must be at most {_MAX_DURATION}, got {_show(value)}")
        for at, value in _long_durations(data)
    )
    if errors:
        raise ValidationError(errors)
    return Document(path, data, tuple(sorted(warns, key=_order)), conv.values, conv.keys)


_STRATEGY_HINT = "expected fixed, linear or exponential"


def _keys_under(node: Any, path: PathT) -> Iterator[tuple[PathT, str, Any]]:
    """Every (path of the mapping, key, value) below `node` in document order, without
    recursion; `metadata` is free-form user data and is not entered."""
    stack: list[tuple[Any, PathT]] = [(node, path)]
    while stack:
        current, where = stack.pop()
        if isinstance(current, dict):
            children: list[tuple[Any, PathT]] = []
            for key, child in current.items():
                yield where, key, child
                if key != "metadata":
                    children.append((child, (*where, key)))
            stack.extend(reversed(children))
        elif isinstance(current, list):
            stack.extend((child, (*where, i)) for i, child in reversed(list(enumerate(current))))


def _unknown_retry_strategies(data: Any) -> list[tuple[PathT, str]]:
    """`retry_strategy` strings the reference would silently take as fixed, with their paths
    (only under `flows`)."""
    if not isinstance(data, dict):
        return []
    return [
        ((*where, key), value)
        for where, key, value in _keys_under(data.get("flows"), ("flows",))
        if key == "retry_strategy" and isinstance(value, str) and value not in RETRY_STRATEGIES
    ]


_DURATION_KEYS = frozenset({"delay", "retry_delay", "retry_max_delay", "timeout"})
_MAX_DURATION = f"30 days ({MAX_DURATION_MS} ms)"


def _too_long(value: str) -> bool:
    try:
        return parse_duration_ms(value) > MAX_DURATION_MS
    except InputError:  # the schema says what is wrong with it
        return False


def _long_durations(data: Any) -> list[tuple[PathT, str]]:
    """Duration strings past `MAX_DURATION_MS` (the schema bounds the integer form), with their
    paths, in flows and in built-in handlers; `metadata` and plugin handlers' keys are theirs."""
    if not isinstance(data, dict):
        return []
    roots: list[tuple[Any, PathT]] = [(data.get("flows"), ("flows",))]
    roots += [
        (handler, ("handlers", index))
        for index, handler in _items(data.get("handlers"))
        if isinstance(handler, dict) and handler.get("type") in (None, "bash", "http")
    ]
    return [
        ((*where, key), value)
        for node, path in roots
        for where, key, value in _keys_under(node, path)
        if key in _DURATION_KEYS and isinstance(value, str) and _too_long(value)
    ]


def _replaced(node: Any, path: PathT, value: Any) -> Any:
    """A copy of `node` with the value at `path` replaced; only the containers on the path are
    copied."""
    if not path:
        return value
    head, rest = path[0], path[1:]
    if isinstance(node, dict) and isinstance(head, str):
        return {**node, head: _replaced(node[head], rest, value)}
    if isinstance(node, list) and isinstance(head, int):
        copy = list(node)
        copy[head] = _replaced(node[head], rest, value)
        return copy
    return node


def _order(e: SpecError) -> tuple[int, int, str]:
    return (e.line, e.column, e.path)


def _offset_pos(raw: bytes, offset: int) -> Pos:
    before = raw[:offset]
    line = before.count(b"\n") + 1
    col = offset - (before.rfind(b"\n") + 1) + 1
    return line, col


# --------------------------------------------------------------------------------------------
# Stage 1: YAML


def _parse_yaml(text: str, path: str, errors: list[SpecError]) -> Any:
    from ruamel.yaml import YAML
    from ruamel.yaml.constructor import DuplicateKeyError
    from ruamel.yaml.error import MarkedYAMLError, YAMLError

    yaml = YAML(typ="rt", pure=True)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. ReusedAnchorWarning: harmless for us
            return yaml.load(text)
    except DuplicateKeyError as exc:
        first = exc.context_mark.line + 1 if exc.context_mark is not None else None
        key = _duplicate_key(exc.problem or "")
        message = f"duplicate key {key}" if key else (exc.problem or "duplicate key")
        if first is not None:
            message += f" in the mapping starting at line {first}"
        errors.append(_mark_error(path, exc.problem_mark, message))
    except MarkedYAMLError as exc:
        problem = exc.problem or exc.context or "invalid YAML"
        message = f"YAML syntax error: {problem}"
        if exc.context and exc.problem and exc.context_mark is not None:
            message += f" ({exc.context} at line {exc.context_mark.line + 1})"
        errors.append(_mark_error(path, exc.problem_mark or exc.context_mark, message))
    except YAMLError as exc:  # e.g. ReaderError: control characters
        position = getattr(exc, "position", None)
        line, col = (1, 1)
        if isinstance(position, int):
            line = text.count("\n", 0, position) + 1
            col = position - (text.rfind("\n", 0, position) + 1) + 1
        reason = getattr(exc, "reason", None) or str(exc).splitlines()[0]
        errors.append(SpecError(path, line, col, "", f"YAML syntax error: {reason}"))
    except RecursionError:
        errors.append(SpecError(path, 1, 1, "", "YAML nesting is too deep"))
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        # ruamel's constructors for explicit tags (`!!int x`, `!!bool x`) raise these directly
        errors.append(SpecError(path, 1, 1, "", f"YAML value does not match its tag: {exc!r}"))
    return None


def _duplicate_key(problem: str) -> str:
    # ruamel: 'found duplicate key "a" with value "2" (original value: "1")'
    start = problem.find('key "')
    end = problem.find('" with value', start)
    return problem[start + 4 : end + 1] if start >= 0 and end > start else ""


def _mark_error(path: str, mark: Any, message: str) -> SpecError:
    line = mark.line + 1 if mark is not None else 1
    col = mark.column + 1 if mark is not None else 1
    return SpecError(path, line, col, "", message)


class _TooBig(Exception):
    def __init__(self, message: str, line: int, col: int) -> None:
        super().__init__(message)
        self.message, self.line, self.col = message, line, col


class _Converter:
    """ruamel round-trip nodes → plain data, recording 1-based positions of values and keys."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.values: dict[PathT, Pos] = {}
        self.keys: dict[PathT, Pos] = {}
        self.errors: list[SpecError] = []
        self.nodes = 0

    def convert(self, node: Any, path: PathT, pos: Pos = (1, 1)) -> Any:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise _TooBig(
                f"document too large: more than {MAX_NODES} nodes (check anchors and aliases)",
                *pos,
            )
        if len(path) > MAX_DEPTH:
            raise _TooBig(f"nesting deeper than {MAX_DEPTH} levels", *pos)
        lc = getattr(node, "lc", None)
        if isinstance(node, dict):
            if lc is not None and lc.line is not None:
                pos = (lc.line + 1, lc.col + 1)
            self.values[path] = pos
            return self._mapping(node, path, pos)
        if isinstance(node, list):
            if lc is not None and lc.line is not None:
                pos = (lc.line + 1, lc.col + 1)
            self.values[path] = pos
            return self._sequence(node, path, pos)
        self.values[path] = pos
        value = _scalar(node)
        if isinstance(value, str) and "\x00" in value:
            self._refuse(path, pos, "contains a NUL character (\\0), which PostgreSQL cannot store")
        elif isinstance(value, float) and not math.isfinite(value):
            self._refuse(path, pos, f"{value} is not a number JSON can hold")
        return value

    def _refuse(self, path: PathT, pos: Pos, message: str) -> None:
        self.errors.append(SpecError(self.path, pos[0], pos[1], format_path(path), message))

    def _mapping(self, node: Any, path: PathT, pos: Pos) -> dict[str, Any]:
        data = getattr(node.lc, "data", None) or {}
        out: dict[str, Any] = {}
        for raw_key, value in node.items():
            where = data.get(raw_key)
            key_pos = (where[0] + 1, where[1] + 1) if where else pos
            value_pos = (where[2] + 1, where[3] + 1) if where else key_pos
            if value is None:  # ruamel points an empty value at whatever follows
                value_pos = key_pos
            # JSON has only string keys: `4:` and `true:` become "4" and "true".
            plain = _scalar(raw_key)
            key = plain if isinstance(plain, str) else json.dumps(plain)
            child = (*path, key)
            if "\x00" in key:
                self._refuse(
                    child,
                    key_pos,
                    "key contains a NUL character (\\0), which PostgreSQL cannot store",
                )
            if key in out:
                self.errors.append(
                    SpecError(
                        self.path,
                        key_pos[0],
                        key_pos[1],
                        format_path(child),
                        f'duplicate key "{key}"',
                    )
                )
            self.keys[child] = key_pos
            out[key] = self.convert(value, child, value_pos)
        return out

    def _sequence(self, node: Any, path: PathT, pos: Pos) -> list[Any]:
        data = getattr(node.lc, "data", None) or {}
        out: list[Any] = []
        for index, value in enumerate(node):
            where = data.get(index)
            item_pos = (where[0] + 1, where[1] + 1) if where else pos
            out.append(self.convert(value, (*path, index), item_pos))
        return out


_SURROGATE = re.compile("[\ud800-\udfff]")


def _text(value: str) -> str:
    """YAML `\\uD83D\\uDE80` escapes arrive as two surrogates: join them into one character
    (as PostgreSQL's jsonb does), and make a lone surrogate U+FFFD so every name is valid text."""
    if not _SURROGATE.search(value):
        return value
    return value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def _scalar(value: Any) -> Any:
    """Strip ruamel's scalar subclasses (ScalarInt, ScalarBoolean, LiteralScalarString...)."""
    if value is None or type(value) in (int, float, bool):
        return value
    if isinstance(value, str):
        return _text(str(value))
    if type(value).__name__ == "ScalarBoolean":  # an int subclass that means a bool
        return bool(value)
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, _dt.date):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, tuple | frozenset | set):
        return [_scalar(v) for v in value]
    inner = getattr(value, "value", None)  # TaggedScalar (custom !tag)
    return str(inner if inner is not None else value)


# --------------------------------------------------------------------------------------------
# Stage 2: JSON Schema


@functools.cache
def _validator() -> Draft202012Validator:
    from jsonschema import Draft202012Validator

    with schema_path().open(encoding="utf-8") as fh:
        schema = json.load(fh)
    return Draft202012Validator(schema)


def _schema_errors(doc: Document) -> list[SpecError]:
    out: list[SpecError] = []
    type_error_paths: set[PathT] = set()
    raw = sorted(_validator().iter_errors(doc.data), key=lambda e: e.validator != "type")
    for err in raw:
        path = tuple(err.absolute_path)
        if any(path[: len(p)] == p for p in type_error_paths):
            continue  # one message per node: a wrong type says it all
        if err.validator == "type":
            type_error_paths.add(path)
        out.extend(_translate(doc, err))
    unique: dict[tuple[int, int, str, str], SpecError] = {}
    for e in out:
        unique.setdefault((e.line, e.column, e.path, e.message), e)
    return list(unique.values())


def _translate(doc: Document, err: SchemaError) -> Iterator[SpecError]:
    path: PathT = tuple(err.absolute_path)
    kind = str(err.validator)
    schema = err.schema if isinstance(err.schema, dict) else {}
    title = schema.get("title", "")
    value: Any = err.instance
    expected: Any = err.validator_value
    if kind in ("additionalProperties", "unevaluatedProperties"):
        allowed = list(schema.get("properties", {}))
        for key in sorted(set(value) - set(allowed), key=lambda k: doc.where_key((*path, k))):
            yield _at_key(doc, (*path, key), _unknown_key(key, allowed))
        return
    if kind == "required":
        for key in expected:
            if isinstance(value, dict) and key not in value:
                yield doc.error(path, f'missing required key "{key}"')
        return
    if kind == "anyOf" and title == "duration":
        if isinstance(value, int | float) and not isinstance(value, bool) and value < 0:
            yield doc.error(path, f"must not be negative, got {_show(value)}")
        elif isinstance(value, int) and not isinstance(value, bool) and value > MAX_DURATION_MS:
            yield doc.error(path, f"must be at most {_MAX_DURATION}, got {_show(value)}")
        else:
            yield doc.error(path, f"invalid duration {_show(value)} ({_DURATION_HINT})")
        return
    if kind in ("anyOf", "oneOf"):
        subs = list(err.context or [])
        if subs and all(s.validator == "required" for s in subs):
            keys = " or ".join(f'"{k}"' for s in subs for k in _listed(s.validator_value))
            yield doc.error(path, f"missing required key {keys}")
            return
        from jsonschema.exceptions import best_match

        best = best_match(subs) if subs else None
        if best is not None:
            yield from _translate(doc, best)
        else:
            yield doc.error(path, err.message)
        return
    yield doc.error(path, _message(kind, expected, value, title, path))


def _listed(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list) else []


def _message(kind: str, expected: Any, value: Any, title: str, path: PathT) -> str:
    if kind == "type":
        names = [expected] if isinstance(expected, str) else list(expected)
        return f"expected {' or '.join(_TYPE_NAMES.get(n, n) for n in names)}, got {_show(value)}"
    if kind == "enum" and title == "step type":
        return f"unknown step type {_show(value)} (expected {', '.join(STEP_TYPES)})"
    if kind == "enum":
        choices = ", ".join(str(c) for c in expected if c != "")
        return f"must be one of {choices} (got {_show(value)})"
    if kind == "const" and expected == "task":  # only parallel tasks pin their type
        return f"a parallel block can only hold tasks, got type {_show(value)}"
    if kind == "const":
        return f"must be {_show(expected)}, got {_show(value)}"
    if kind == "minimum":
        if expected == 0:
            return f"must not be negative, got {_show(value)}"
        return f"must be at least {expected}, got {_show(value)}"
    if kind == "maximum":
        return f"must be at most {expected}, got {_show(value)}"
    if kind in ("minLength", "minItems") and expected == 1:
        return "must not be empty"
    if kind == "minItems":
        return f"must have at least {expected} items"
    if kind == "pattern" and path[-1:] == ("type",):
        return (
            f"invalid handler type {_show(value)} (lowercase letters, digits, _ . -; "
            "starting with a letter)"
        )
    if kind == "pattern":
        return f"invalid value {_show(value)} (must match {expected})"
    return f"invalid value {_show(value)}"


_TYPE_NAMES = {
    "integer": "an integer",
    "number": "a number",
    "string": "a string",
    "boolean": "true or false",
    "object": "a mapping",
    "array": "a list",
    "null": "nothing",
}


def _show(value: Any) -> str:
    """A value as the user wrote it, short: `"abc"`, `12`, `true`, `a mapping`, `a list`."""
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "nothing (null)"
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 60 else text[:57] + '..."'


def _unknown_key(key: str, allowed: list[str]) -> str:
    import difflib  # only for an unknown key

    hint = difflib.get_close_matches(key, allowed, n=1)
    message = f'unknown key "{key}" (allowed: {", ".join(allowed)})'
    return message + (f'; did you mean "{hint[0]}"?' if hint else "")


def _at_key(doc: Document, path: PathT, message: str) -> SpecError:
    line, col = doc.where_key(path)
    return SpecError(doc.path, line, col, format_path(path), message)


# --------------------------------------------------------------------------------------------
# Stage 3: checks the schema cannot express


@record
class _Name:
    what: str  # e.g. 'step "x"', 'join "p_join" of parallel "p"'
    pos: Pos


class _Semantics:
    """Walks flows defensively: anything of the wrong shape was reported by the schema."""

    def __init__(
        self,
        doc: Document,
        errors: list[SpecError],
        missing: list[SpecError],
        warnings: list[SpecError],
    ) -> None:
        self.doc = doc
        self.errors = errors
        self.missing = missing  # undeclared handlers: errors, or warnings for the daemon
        self.warnings = warnings
        self.handlers: dict[str, Pos] = {}
        self.names: dict[str, _Name] = {}
        self.compensations: dict[str, tuple[PathT, Any]] = {}

    def run(self) -> None:
        data = self.doc.data
        handlers = data.get("handlers")
        for i, h in _items(handlers):
            if isinstance(h, dict) and isinstance(h.get("name"), str) and h["name"]:
                self._declare_handler(h["name"], ("handlers", i, "name"))
            if isinstance(h, dict) and isinstance(h.get("exec"), str):
                self._exec(h, ("handlers", i, "exec"))
        seen_flows: dict[tuple[str, int], Pos] = {}
        for i, flow in _items(data.get("flows")):
            if not isinstance(flow, dict):
                continue
            name, version = flow.get("name"), flow.get("version", 1)
            if isinstance(name, str) and type(version) is int:
                at = ("flows", i, "name")
                first = seen_flows.setdefault((name, version), self.doc.where(at))
                if first != self.doc.where(at):
                    self._err(
                        at,
                        f'duplicate flow "{name}" version {version} '
                        f"(first declared at {_fmt(first)})",
                    )
            self.names = {}
            self.compensations = {}
            self._steps(flow.get("steps"), ("flows", i, "steps"))
            self._check_compensations()

    # -- helpers ------------------------------------------------------------------------------

    def _err(self, path: PathT, message: str) -> None:
        self.errors.append(self.doc.error(path, message))

    def _declare_handler(self, name: str, path: PathT) -> None:
        pos = self.doc.where(path)
        first = self.handlers.setdefault(name, pos)
        if first != pos:
            self._err(path, f'duplicate handler "{name}" (first declared at {_fmt(first)})')

    def _exec(self, handler: dict[str, Any], path: PathT) -> None:
        """What would otherwise fail only when called, mid-saga: a misspelt URL scheme, a URL
        that does not parse, a script file that is not there. Errors for `validate` and `run`,
        warnings for floxyd (as for undeclared handlers). An unset `${NAME}` in a URL is always a
        warning: the daemon that runs the handler has its own environment."""
        import re
        from urllib.parse import urlsplit

        text = handler["exec"].strip()
        kind = handler.get("type")
        single = bool(text) and not any(c.isspace() for c in text)
        scheme = re.match(r"([A-Za-z][A-Za-z0-9+.-]*)://", text)
        if kind is None and single and scheme and scheme.group(1).lower() not in ("http", "https"):
            self.missing.append(
                self.doc.error(
                    path,
                    f'unsupported URL scheme "{scheme.group(1)}" (expected http:// or https://)',
                )
            )
            return
        if kind == "http" or (kind is None and scheme is not None and single):
            references = url_references(text)
            try:
                parts = urlsplit(re.sub(r"\$\{[A-Za-z_][A-Za-z0-9_]*\}", "x", text))
                ok = single and parts.scheme in ("http", "https") and bool(parts.hostname)
                _ = parts.port  # a port that is not a number raises ValueError
            except ValueError:
                ok = False
            if not ok:
                self.missing.append(
                    self.doc.error(path, "invalid URL: expected http:// or https:// with a host")
                )
            for name in references:
                if name not in os.environ:
                    self.warnings.append(
                        self.doc.error(
                            path,
                            f"${{{name}}} is not set in this environment; the process that "
                            "calls this handler must have it",
                        )
                    )
            return
        if kind not in (None, "bash"):
            return
        if not script_file(text):
            return
        base = os.path.dirname(os.path.abspath(self.doc.path)) if self.doc.path else "."
        if not script_exists(text, base):
            self.missing.append(
                self.doc.error(
                    path, f"script file not found: {os.path.normpath(os.path.join(base, text))}"
                )
            )

    def _use_handler(self, name: Any, path: PathT, *, implicit: bool = False) -> None:
        if isinstance(name, str) and name and name not in self.handlers:
            why = " (a task without handler: calls the handler named like the step)"
            message = f'handler "{name}" is not declared under handlers'
            self.missing.append(self.doc.error(path, message + (why if implicit else "")))

    def _declare(self, name: Any, what: str, path: PathT) -> bool:
        """Registers a name of the flow's graph; reports clashes; False if the name is reserved."""
        if not isinstance(name, str) or not name:
            return False
        if name == _RESERVED_ROOT:
            self._err(path, f'name "{name}" is reserved')
            return False
        if name.startswith(_RESERVED_PREFIX):
            self._err(path, f'name "{name}": names starting with "{_RESERVED_PREFIX}" are reserved')
            return False
        first = self.names.get(name)
        if first is None:
            self.names[name] = _Name(what, self.doc.where(path))
        else:
            self._err(
                path,
                f'duplicate name "{name}": {what} clashes with {first.what} '
                f"declared at {_fmt(first.pos)}",
            )
        return True

    # -- steps --------------------------------------------------------------------------------

    def _steps(self, steps: Any, path: PathT) -> None:
        for i, step in _items(steps):
            self._step(step, (*path, i))

    def _step(self, step: Any, path: PathT) -> None:
        if isinstance(step, str):
            self._declare(step, f'step "{step}"', path)
            self._use_handler(step, path, implicit=True)
            return
        if not isinstance(step, dict):
            return
        kind = step.get("type", "task")
        name = step.get("name")
        name_path = (*path, "name")
        if kind == "task":
            self._task(step, path)
        elif kind == "parallel":
            declared = self._declare(name, f'parallel "{name}"', name_path)
            tasks = step.get("tasks")
            if isinstance(tasks, list):
                if len(tasks) < 2:
                    self._err(
                        (*path, "tasks"),
                        f"a parallel block needs at least 2 tasks, got {len(tasks)}",
                    )
                for i, task in enumerate(tasks):
                    self._parallel_task(task, (*path, "tasks", i))
            if declared:
                join = default_join_name(str(name))
                self._declare(join, f'join "{join}" of parallel "{name}"', name_path)
        elif kind == "condition":
            self._declare(name, f'condition "{name}"', name_path)
            key = expression_key(step)
            if step.get(key) == "":
                self._err((*path, key), "must not be empty")
            self._expression(step.get(key), (*path, key))
            if "else" in step:
                branch = step["else"]
                if isinstance(branch, list) and not branch:
                    self._err((*path, "else"), "else must not be empty (omit it instead)")
                self._steps(branch, (*path, "else"))
        elif kind in ("savepoint", "save_point"):
            self._declare(name, f'savepoint "{name}"', name_path)
            if "branches" in path:
                self._err(
                    (*path, "type"),
                    f'savepoint "{name}" is inside a fork branch: a savepoint may not be placed '
                    "inside a fork or parallel branch (a partial rollback of one of several "
                    "concurrent branches has no clear meaning)",
                )
        elif kind == "fork":
            self._fork(step, path)
        elif kind == "human":
            self._declare(name, f'human step "{name}"', name_path)

    def _task(self, step: dict[str, Any], path: PathT) -> None:
        name = step.get("name")
        self._declare(name, f'step "{name}"', (*path, "name"))
        if "handler" in step:
            self._use_handler(step["handler"], (*path, "handler"))
        else:
            self._use_handler(name, (*path, "name"), implicit=True)
        if "on_failure" in step:
            self._on_failure(step["on_failure"], (*path, "on_failure"))

    def _parallel_task(self, task: Any, path: PathT) -> None:
        if isinstance(task, str):
            self._declare(task, f'step "{task}"', path)
            self._use_handler(task, path, implicit=True)
        elif isinstance(task, dict) and task.get("type", "task") == "task":
            self._task(task, path)

    def _fork(self, step: dict[str, Any], path: PathT) -> None:
        name = step.get("name")
        name_path = (*path, "name")
        declared = self._declare(name, f'fork "{name}"', name_path)
        branches = step.get("branches")
        if isinstance(branches, list):
            if len(branches) < 2:
                self._err(
                    (*path, "branches"), f"a fork needs at least 2 branches, got {len(branches)}"
                )
            for i, branch in enumerate(branches):
                if isinstance(branch, list) and not branch:
                    self._err((*path, "branches", i), "a fork branch must have at least 1 step")
                self._steps(branch, (*path, "branches", i))
        join = step.get("join")
        if isinstance(join, dict) and "name" in join:
            join_name = join["name"]
            self._declare(
                join_name, f'join "{join_name}" of fork "{name}"', (*path, "join", "name")
            )
        elif declared:
            default = default_join_name(str(name))
            self._declare(default, f'join "{default}" of fork "{name}"', name_path)

    def _on_failure(self, value: Any, path: PathT) -> None:
        if isinstance(value, str) and value:
            self._use_handler(value, path)
            self._compensation(value, {"handler": value}, path)
        elif isinstance(value, dict) and isinstance(value.get("handler"), str):
            handler = value["handler"]
            self._use_handler(handler, (*path, "handler"))
            name = value.get("name", handler)
            where = (*path, "name") if "name" in value else (*path, "handler")
            if isinstance(name, str) and name:
                self._compensation(name, value, where)

    def _compensation(self, name: str, spec: dict[str, Any], path: PathT) -> None:
        """Many steps may share a compensation, but only if they all define it the same way."""
        definition = {**spec, "name": name}
        first = self.compensations.get(name)
        if first is None:
            self.compensations[name] = (path, definition)
        elif first[1] != definition:
            self._err(
                path,
                f'compensation "{name}" is defined differently at {_fmt(self.doc.where(first[0]))}',
            )

    def _check_compensations(self) -> None:
        for name, (path, _definition) in self.compensations.items():
            if name == _RESERVED_ROOT or name.startswith(_RESERVED_PREFIX):
                self._declare(name, f'compensation "{name}"', path)  # reports "reserved"
                continue
            clash = self.names.get(name)
            if clash is not None:
                self._err(
                    path,
                    f'compensation "{name}" shadows {clash.what} declared at {_fmt(clash.pos)}',
                )

    def _expression(self, expr: Any, path: PathT) -> None:
        if not isinstance(expr, str) or not expr:
            return
        parse = _condition_parser()
        try:
            parse(expr)
        except ConditionError as exc:
            reason = str(exc).removeprefix("parse condition: ")
            self._err(path, f"invalid condition {_show(expr)}: {reason}")
        except RecursionError:
            self._err(path, f"invalid condition {_show(expr)}: nested too deeply")


def _condition_parser() -> Callable[[str], object]:
    from floxy_core.conditions import parse_condition

    parse: Callable[[str], object] = parse_condition
    return parse


def _items(value: Any) -> Iterable[tuple[int, Any]]:
    return enumerate(value) if isinstance(value, list) else ()


def _fmt(pos: Pos) -> str:
    return f"{pos[0]}:{pos[1]}"
