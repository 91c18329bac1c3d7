"""Condition expressions: the part of Go `text/template` that the reference engine's conditions use.

A condition is template text rendered against the top-level JSON object of the step input (any other
input counts as an empty object). The rendered text is trimmed and read like Go's
`strconv.ParseBool`: `1 t T TRUE true True` are true, `0 f F FALSE false False` are false, anything
else is an error. Text outside `{{ }}` is copied as is; `{{-` and `-}}` trim the whitespace next to
them, and `{{/* comments */}}` print nothing.

Inside an action::

    .  .a  .a.b.c              the data, a field, a nested field (a missing key is "no value")
    "go \\"escapes\\""  `raw`    strings
    1  -2  3.5  1e3  .5        numbers (exact decimals, never binary floats)
    true  false  nil
    fn arg...  (fn arg...)     calls; parentheses nest them
    x | fn arg...              pipelines: x becomes the last argument of fn

Functions: `eq ne gt lt ge le` with the reference's loose numeric comparison, `contains hasPrefix
hasSuffix`, and the Go builtins `and or not len index`. Everything else in Go templates (`if`,
`range`, `with`, `define`, `template`, `block`, variables, method calls) is rejected when parsing.

An expression is data, never code: it is tokenized and parsed into a small immutable tree, and the
evaluator only walks that tree. Work is bounded by the limits below, so a hostile workflow file can
cost at most a few thousand steps per evaluation (plus the size of the step input it may print).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Final, NoReturn

from floxy_core.errors import ConditionError

__all__ = ["Condition", "evaluate_condition", "parse_condition"]

MAX_EXPR_LEN: Final = 4096
MAX_DEPTH: Final = 32
MAX_STRING_LEN: Final = 1024
MAX_TOKENS: Final = 256
MAX_OUTPUT_LEN: Final = 65536
"""Caps the rendered text: printing a large input several times must not exhaust memory."""

_CACHE_SIZE: Final = 1000
_SHOWN_OUTPUT_LEN: Final = 200
_SPACE: Final = " \t\r\n"
_TRUE: Final = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_FALSE: Final = frozenset({"0", "f", "F", "FALSE", "false", "False"})
_UNSUPPORTED: Final = frozenset(
    {"if", "else", "end", "range", "with", "define", "template", "block", "break", "continue"}
)
_NUMBER: Final = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_ESCAPES: Final = {
    "a": "\a",
    "b": "\b",
    "f": "\f",
    "n": "\n",
    "r": "\r",
    "t": "\t",
    "v": "\v",
    "\\": "\\",
    '"': '"',
}
_ZERO: Final = Decimal(0)
_ONE: Final = Decimal(1)


class _NoValue:
    """What a missing field yields; Go prints it as `<no value>`, unlike a JSON null (`<nil>`)."""

    def __repr__(self) -> str:
        return "<no value>"


_NO_VALUE: Final = _NoValue()


# --- tokens and syntax tree ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str  # text open close ident field dot string number bool nil lparen rparen pipe
    pos: int
    text: str  # the source text (the literal text for `text` tokens)
    value: object = None  # decoded literal value
    path: tuple[str, ...] = ()  # field names


@dataclass(frozen=True, slots=True)
class _Literal:
    value: object
    pos: int


@dataclass(frozen=True, slots=True)
class _Field:
    path: tuple[str, ...]
    pos: int


@dataclass(frozen=True, slots=True)
class _Call:
    name: str
    args: tuple[_Node, ...]
    pos: int


_Node = _Literal | _Field | _Call
_Part = str | _Node  # literal text, or an action whose value is printed


# --- lexer -----------------------------------------------------------------------------------


def _is_word_char(c: str) -> bool:
    return c == "_" or c.isalnum()


def _is_space(c: str) -> bool:
    return c != "" and c in _SPACE


def _quote(text: str) -> str:
    """Close to Go's %q, so messages read like the reference's."""
    return json.dumps(text, ensure_ascii=False)


class _Lexer:
    """Splits the template into text and action tokens, applying trim markers on the way."""

    def __init__(self, expr: str) -> None:
        self.expr = expr
        self.tokens: list[_Token] = []

    def fail(self, message: str, pos: int) -> NoReturn:
        raise ConditionError(f"parse condition: {message} at {pos}", expr=self.expr, position=pos)

    def emit(self, token: _Token) -> None:
        if len(self.tokens) >= MAX_TOKENS:
            self.fail(f"too many tokens (limit {MAX_TOKENS})", token.pos)
        self.tokens.append(token)

    def run(self) -> list[_Token]:
        expr, pos, trim_left_of_text = self.expr, 0, False
        while pos < len(expr):
            start = expr.find("{{", pos)
            end = len(expr) if start < 0 else start
            # Go's trim markers need the space: `{{-3}}` is the number -3, `{{- 3}}` trims.
            trim_right_of_text = start >= 0 and expr[start + 2 : start + 3] == "-"
            trim_right_of_text = trim_right_of_text and _is_space(expr[start + 3 : start + 4])
            text = expr[pos:end]
            if trim_left_of_text:
                text = text.lstrip(_SPACE)
            if trim_right_of_text:
                text = text.rstrip(_SPACE)
            if text:
                self.emit(_Token("text", pos, text))
            if start < 0:
                break
            pos, trim_left_of_text = self.action(start, start + (4 if trim_right_of_text else 2))
        return self.tokens

    def action(self, start: int, pos: int) -> tuple[int, bool]:
        """Lexes one `{{ ... }}` from `pos`; returns where text resumes and whether to trim it."""
        expr = self.expr
        if expr.startswith("/*", pos):
            close = expr.find("*/", pos + 2)
            if close < 0:
                self.fail("unclosed comment", pos)
            pos = close + 2
            if expr.startswith("}}", pos):
                return pos + 2, False
            if _is_space(expr[pos : pos + 1]) and expr.startswith("-}}", pos + 1):
                return pos + 4, True
            self.fail("comment ends before closing delimiter", pos)
        self.emit(_Token("open", start, "{{"))
        while True:
            if pos >= len(expr):
                self.fail("unclosed action (missing }})", start)
            c = expr[pos]
            if expr.startswith("}}", pos):
                self.emit(_Token("close", pos, "}}"))
                return pos + 2, False
            if c in _SPACE:
                if expr.startswith("-}}", pos + 1):
                    self.emit(_Token("close", pos + 1, "-}}"))
                    return pos + 4, True
                pos += 1
            elif c in "()|":
                self.emit(_Token({"(": "lparen", ")": "rparen", "|": "pipe"}[c], pos, c))
                pos += 1
            elif c == '"':
                pos = self.string(pos)
            elif c == "`":
                pos = self.raw_string(pos)
            elif c in "+-" or c.isdigit() or (c == "." and expr[pos + 1 : pos + 2].isdigit()):
                pos = self.number(pos)
            elif c == ".":
                pos = self.field(pos)
            elif c == "_" or c.isalpha():
                pos = self.word(pos)
            elif c == "$":
                self.fail(
                    f"variables ({_quote(self.run_of_word(pos + 1, '$'))}) are not supported", pos
                )
            else:
                self.fail(f"unexpected {_quote(c)}", pos)

    def run_of_word(self, pos: int, prefix: str = "") -> str:
        end = pos
        while end < len(self.expr) and _is_word_char(self.expr[end]):
            end += 1
        return prefix + self.expr[pos:end]

    def word(self, pos: int) -> int:
        name = self.run_of_word(pos)
        if name in _UNSUPPORTED:
            self.fail(f"{_quote(name)} is not supported (a condition is a single expression)", pos)
        if name in ("true", "false"):
            self.emit(_Token("bool", pos, name, name == "true"))
        elif name == "nil":
            self.emit(_Token("nil", pos, name))
        else:
            self.emit(_Token("ident", pos, name))
        return pos + len(name)

    def field(self, pos: int) -> int:
        expr, end, names = self.expr, pos, []
        while expr[end : end + 1] == "." and (
            expr[end + 1 : end + 2] == "_" or expr[end + 1 : end + 2].isalpha()
        ):
            name = self.run_of_word(end + 1)
            names.append(name)
            end += 1 + len(name)
        if self.tokens and self.tokens[-1].pos + len(self.tokens[-1].text) == pos:
            prev = self.tokens[-1]
            if prev.kind not in ("open", "lparen", "pipe"):
                self.fail(
                    f"unexpected {_quote(expr[pos : max(end, pos + 1)])} after term "
                    f"{_quote(prev.text)} (no field access on expressions)",
                    pos,
                )
        if not names:
            self.emit(_Token("dot", pos, "."))
            return pos + 1
        self.emit(_Token("field", pos, expr[pos:end], path=tuple(names)))
        return end

    def number(self, pos: int) -> int:
        match = _NUMBER.match(self.expr, pos)
        end = match.end() if match else pos + 1
        if (
            match is None
            or self.expr[end : end + 1] == "."
            or _is_word_char(self.expr[end : end + 1])
        ):
            bad_end = end
            while bad_end < len(self.expr) and (
                _is_word_char(self.expr[bad_end]) or self.expr[bad_end] in ".+-"
            ):
                bad_end += 1
            self.fail(f"bad number syntax: {_quote(self.expr[pos:bad_end])}", pos)
        text = match.group()
        try:
            value: object = int(text) if text.lstrip("+-").isdigit() else Decimal(text)
        except (ValueError, InvalidOperation):
            self.fail(f"number out of range: {_quote(text)}", pos)
        self.emit(_Token("number", pos, text, value))
        return end

    def string(self, start: int) -> int:
        """A Go interpreted string literal; `\\x` and octal escapes are bytes, as in Go."""
        expr, pos, buf = self.expr, start + 1, bytearray()
        while True:
            if pos >= len(expr) or expr[pos] == "\n":
                self.fail("unterminated quoted string", start)
            c = expr[pos]
            if c == '"':
                break
            if c != "\\":
                buf += c.encode("utf-8", "surrogatepass")
                pos += 1
                continue
            esc = expr[pos + 1 : pos + 2]
            if esc in _ESCAPES:
                buf += _ESCAPES[esc].encode()
                pos += 2
            elif esc and esc in "xuU":
                width = {"x": 2, "u": 4, "U": 8}[esc]
                digits = expr[pos + 2 : pos + 2 + width]
                if len(digits) != width or any(d not in "0123456789abcdefABCDEF" for d in digits):
                    self.fail(f"invalid escape \\{esc} in string", pos)
                code = int(digits, 16)
                if esc == "x":
                    buf.append(code)
                elif code > 0x10FFFF or 0xD800 <= code < 0xE000:
                    self.fail(f"invalid escape \\{esc}{digits} in string", pos)
                else:
                    buf += chr(code).encode()
                pos += 2 + width
            elif esc and esc in "01234567":
                digits = expr[pos + 1 : pos + 4]
                if len(digits) != 3 or any(d not in "01234567" for d in digits) or digits > "377":
                    self.fail(f"invalid escape \\{digits} in string", pos)
                buf.append(int(digits, 8))
                pos += 4
            else:
                self.fail(f"invalid escape \\{esc} in string", pos)
        return self.literal(start, pos + 1, buf.decode("utf-8", "replace"))

    def raw_string(self, start: int) -> int:
        close = self.expr.find("`", start + 1)
        if close < 0:
            self.fail("unterminated raw quoted string", start)
        return self.literal(start, close + 1, self.expr[start + 1 : close].replace("\r", ""))

    def literal(self, start: int, end: int, value: str) -> int:
        if len(value) > MAX_STRING_LEN:
            self.fail(f"string literal longer than {MAX_STRING_LEN} characters", start)
        self.emit(_Token("string", start, self.expr[start:end], value))
        return end


# --- parser ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Func:
    min_args: int
    max_args: int | None  # None: variadic
    impl: Callable[[Sequence[object]], object] | None  # None: and/or, which short-circuit


class _Parser:
    """Recursive descent over the tokens; every name and arity is checked here, not at run time."""

    def __init__(self, expr: str, tokens: list[_Token]) -> None:
        self.expr = expr
        self.tokens = tokens
        self.i = 0

    def fail(self, message: str, pos: int) -> NoReturn:
        raise ConditionError(f"parse condition: {message} at {pos}", expr=self.expr, position=pos)

    def peek(self) -> _Token:
        # The lexer guarantees every action ends with a `close` token, so this never runs off.
        return self.tokens[self.i]

    def advance(self) -> _Token:
        token = self.tokens[self.i]
        self.i += 1
        return token

    def unexpected(self, token: _Token) -> NoReturn:
        self.fail(f"unexpected {_quote(token.text)}", token.pos)

    def template(self) -> tuple[_Part, ...]:
        parts: list[_Part] = []
        while self.i < len(self.tokens):
            token = self.advance()
            if token.kind == "text":
                parts.append(token.text)
                continue
            parts.append(self.pipeline(0))
            if self.peek().kind != "close":
                self.unexpected(self.peek())
            self.advance()
        return tuple(parts)

    def pipeline(self, depth: int) -> _Node:
        node = self.command(depth, None, 1)
        stage = 1
        while self.peek().kind == "pipe":
            pipe = self.advance()
            stage += 1
            depth += 1  # each stage wraps the previous one: it nests like a parenthesis
            if depth > MAX_DEPTH:
                self.fail(f"nesting deeper than {MAX_DEPTH}", pipe.pos)
            node = self.command(depth, node, stage)
        return node

    def command(self, depth: int, piped: _Node | None, stage: int) -> _Node:
        first = self.peek()
        if first.kind in ("pipe", "rparen", "close"):
            self.fail("missing value for command", first.pos)
        if first.kind == "ident":
            self.advance()
            args: list[_Node] = []
            while self.peek().kind not in ("pipe", "rparen", "close"):
                args.append(self.operand(depth))
            if piped is not None:
                args.append(piped)
            return self.call(first, args)
        if piped is not None:
            self.fail(f"non executable command in pipeline stage {stage}", first.pos)
        node = self.operand(depth)
        after = self.peek()
        if after.kind not in ("pipe", "rparen", "close"):
            self.fail(f"can't give argument to non-function {first.text}", after.pos)
        if first.kind == "nil":
            self.fail("nil is not a command", first.pos)
        return node

    def operand(self, depth: int) -> _Node:
        token = self.advance()
        if token.kind == "field":
            return _Field(token.path, token.pos)
        if token.kind == "dot":
            return _Field((), token.pos)
        if token.kind in ("string", "number", "bool", "nil"):
            return _Literal(token.value, token.pos)
        if token.kind == "ident":
            return self.call(token, [])
        if token.kind == "lparen":
            if depth + 1 > MAX_DEPTH:
                self.fail(f"nesting deeper than {MAX_DEPTH}", token.pos)
            node = self.pipeline(depth + 1)
            closing = self.peek()
            if closing.kind == "close":
                self.fail("unclosed left paren", token.pos)
            if closing.kind != "rparen":
                self.unexpected(closing)
            self.advance()
            return node
        self.unexpected(token)

    def call(self, name: _Token, args: list[_Node]) -> _Call:
        func = _FUNCS.get(name.text)
        if func is None:
            self.fail(f"function {_quote(name.text)} not defined", name.pos)
        if len(args) < func.min_args or (func.max_args is not None and len(args) > func.max_args):
            want = f"at least {func.min_args}" if func.max_args is None else str(func.max_args)
            self.fail(
                f"wrong number of args for {name.text}: want {want} got {len(args)}", name.pos
            )
        return _Call(name.text, tuple(args), name.pos)


# --- values ----------------------------------------------------------------------------------


class _Fail(Exception):
    """An evaluation error; `pos` is filled in by the innermost call or field that knows it."""

    def __init__(self, message: str, pos: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.pos = pos


def _type_name(value: object) -> str:
    if value is None or value is _NO_VALUE:
        return "nil"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float | Decimal):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, Mapping):
        return "map"
    if isinstance(value, list | tuple):
        return "list"
    return type(value).__name__


def _truth(value: object) -> bool:
    """Go's template truth: zero numbers, empty strings and collections, nil are false."""
    if value is None or value is _NO_VALUE:
        return False
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float | Decimal):
        return value != 0
    if isinstance(value, str | Mapping | list | tuple):
        return len(value) > 0
    return True


def _to_decimal(value: object) -> Decimal | None:
    """The reference's numeric reading of a value, exact; None when it is not numeric."""
    if value is None or value is _NO_VALUE:
        return _ZERO
    if isinstance(value, bool):
        return _ONE if value else _ZERO
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        # repr() is the shortest text that reads back as this float: 0.1 stays 0.1.
        return None if math.isnan(value) else Decimal(repr(value))
    if isinstance(value, Decimal):
        return value
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return _ZERO
        if _NUMBER.fullmatch(text):
            try:
                return Decimal(text)
            except InvalidOperation:  # exponent out of range: Go's ParseFloat refuses it too
                return None
    return None


def _format_float(value: float) -> str:
    """Go's `%v` for a float64: shortest digits, exponent form from 1e+06 and below 1e-04."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    sign, digit_tuple, exponent = Decimal(repr(value)).normalize().as_tuple()
    assert isinstance(exponent, int)
    neg = "-" if sign else ""
    digits = "".join(map(str, digit_tuple))
    if digits == "0":
        return neg + "0"
    point = len(digits) + exponent  # digits before the decimal point
    exp10 = point - 1
    if exp10 < -4 or exp10 >= 6:
        mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return f"{neg}{mantissa}e{'+' if exp10 >= 0 else '-'}{abs(exp10):02d}"
    if point <= 0:
        return f"{neg}0.{'0' * -point}{digits}"
    if point >= len(digits):
        return neg + digits + "0" * (point - len(digits))
    return f"{neg}{digits[:point]}.{digits[point:]}"


def _sprint(value: object) -> str:
    """Go's `fmt.Sprint` for decoded JSON, which is how the reference prints and compares."""
    if value is _NO_VALUE:
        return "<no value>"
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float | Decimal):
        return _format_float(float(value))
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping):
        items = sorted(value.items(), key=lambda item: str(item[0]))
        return "map[" + " ".join(f"{k}:{_sprint(v)}" for k, v in items) + "]"
    if isinstance(value, list | tuple):
        return "[" + " ".join(_sprint(v) for v in value) + "]"
    return str(value)


# --- functions -------------------------------------------------------------------------------


def _equal(a: object, b: object) -> bool:
    if a is None and b is None:
        return True
    if a is None or b is None:
        number = _to_decimal(b if a is None else a)
        return number is not None and number == 0
    da, db = _to_decimal(a), _to_decimal(b)
    if da is not None and db is not None:
        return da == db
    if da is not None or db is not None:
        return False
    return _sprint(a) == _sprint(b)


def _compare(a: object, b: object) -> int:
    da, db = _to_decimal(a), _to_decimal(b)
    da = _ZERO if da is None else da
    db = _ZERO if db is None else db
    return (da > db) - (da < db)


def _string_arg(args: Sequence[object], i: int) -> str:
    value = args[i]
    if not isinstance(value, str):
        raise _Fail(f"argument {i + 1} must be a string, got {_type_name(value)}")
    return value


def _string_func(test: Callable[[str, str], bool]) -> Callable[[Sequence[object]], object]:
    return lambda args: test(_string_arg(args, 0), _string_arg(args, 1))


def _len(args: Sequence[object]) -> object:
    value = args[0]
    if isinstance(value, str):
        return len(value.encode("utf-8", "surrogatepass"))  # Go counts bytes
    if isinstance(value, Mapping | list | tuple):
        return len(value)
    raise _Fail(f"len of {_type_name(value)}")


def _index(args: Sequence[object]) -> object:
    item = args[0]
    if item is None:
        raise _Fail("index of untyped nil")
    for key in args[1:]:
        if item is None:
            raise _Fail("index of nil pointer")
        if isinstance(item, Mapping):
            if not isinstance(key, str):
                raise _Fail(f"map key must be a string, got {_type_name(key)}")
            item = item.get(key)  # a missing key is the zero value, nil, as in Go
            continue
        if isinstance(item, str):
            seq: Sequence[object] = item.encode("utf-8", "surrogatepass")  # Go indexes bytes
        elif isinstance(item, list | tuple):
            seq = item
        else:
            raise _Fail(f"can't index item of type {_type_name(item)}")
        if isinstance(key, bool) or not isinstance(key, int):
            raise _Fail(f"cannot index {_type_name(item)} with {_type_name(key)}")
        if not 0 <= key < len(seq):
            raise _Fail(f"index out of range: {key}")
        item = seq[key]
    return item


_FUNCS: Final[dict[str, _Func]] = {
    "eq": _Func(2, 2, lambda a: _equal(a[0], a[1])),
    "ne": _Func(2, 2, lambda a: not _equal(a[0], a[1])),
    "gt": _Func(2, 2, lambda a: _compare(a[0], a[1]) > 0),
    "lt": _Func(2, 2, lambda a: _compare(a[0], a[1]) < 0),
    "ge": _Func(2, 2, lambda a: _compare(a[0], a[1]) >= 0),
    "le": _Func(2, 2, lambda a: _compare(a[0], a[1]) <= 0),
    "contains": _Func(2, 2, _string_func(lambda s, sub: sub in s)),
    "hasPrefix": _Func(2, 2, _string_func(str.startswith)),
    "hasSuffix": _Func(2, 2, _string_func(str.endswith)),
    "and": _Func(1, None, None),
    "or": _Func(1, None, None),
    "not": _Func(1, 1, lambda a: not _truth(a[0])),
    "len": _Func(1, 1, _len),
    "index": _Func(1, None, _index),
}


# --- evaluator -------------------------------------------------------------------------------


def _lookup(node: _Field, data: Mapping[str, object]) -> object:
    value: object = data
    for i, name in enumerate(node.path):
        if value is _NO_VALUE:
            return _NO_VALUE  # Go: a field of "no value" is again "no value"
        if isinstance(value, Mapping):
            value = value.get(name, _NO_VALUE)
        elif value is None:
            raise _Fail(f"nil pointer evaluating .{'.'.join(node.path[: i + 1])}", node.pos)
        else:
            raise _Fail(f"can't evaluate field {name} in type {_type_name(value)}", node.pos)
    return value


def _eval(node: _Node, data: Mapping[str, object]) -> object:
    if isinstance(node, _Literal):
        return node.value
    if isinstance(node, _Field):
        return _lookup(node, data)
    func = _FUNCS[node.name]
    if func.impl is None:  # and/or: return the deciding argument itself, evaluating no further
        want = node.name == "or"
        value: object = _NO_VALUE
        for arg in node.args:
            value = _eval(arg, data)
            if _truth(value) == want:
                return value
        return value
    args = [_eval(arg, data) for arg in node.args]
    try:
        return func.impl([None if a is _NO_VALUE else a for a in args])
    except _Fail as exc:
        if exc.pos is not None:
            raise
        raise _Fail(f"error calling {node.name}: {exc.message}", node.pos) from None


# --- public API ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Condition:
    """A parsed condition; get it from `parse_condition` and evaluate it any number of times."""

    expr: str
    _parts: tuple[_Part, ...] = field(repr=False, compare=False)

    def render(self, data: object) -> str:
        """The output before it is trimmed and read as a bool, to explain a result."""
        root: Mapping[str, object] = data if isinstance(data, Mapping) else {}
        out: list[str] = []
        size = 0
        try:
            for part in self._parts:
                text = part if isinstance(part, str) else _sprint(_eval(part, root))
                size += len(text)
                if size > MAX_OUTPUT_LEN:
                    raise _Fail(f"output longer than {MAX_OUTPUT_LEN} characters")
                out.append(text)
        except _Fail as exc:
            where = "" if exc.pos is None else f" at {exc.pos}"
            raise ConditionError(
                f"execute condition: {exc.message}{where}", expr=self.expr, position=exc.pos
            ) from None
        except RecursionError:
            raise ConditionError(
                "execute condition: data nested too deeply", expr=self.expr
            ) from None
        return "".join(out)

    def evaluate(self, data: object) -> bool:
        """The trimmed output read like Go's `strconv.ParseBool`; any other text is an error."""
        text = self.render(data).strip()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        shown = text if len(text) <= _SHOWN_OUTPUT_LEN else text[:_SHOWN_OUTPUT_LEN] + "..."
        raise ConditionError(f"invalid condition output: {_quote(shown)}", expr=self.expr)


@lru_cache(maxsize=_CACHE_SIZE)
def _parse_cached(expr: str) -> Condition:
    if len(expr) > MAX_EXPR_LEN:
        raise ConditionError(
            f"parse condition: expression too long ({len(expr)} characters, limit {MAX_EXPR_LEN})",
            expr=expr,
            position=MAX_EXPR_LEN,
        )
    tokens = _Lexer(expr).run()
    return Condition(expr, _Parser(expr, tokens).template())


def parse_condition(expr: str) -> Condition:
    """Parses (and caches) a condition, so workflow files can be checked before anything runs."""
    if not isinstance(expr, str):
        raise ConditionError(f"parse condition: expected a string, got {type(expr).__name__}")
    return _parse_cached(expr)


def evaluate_condition(expr: str, data: object) -> bool:
    """Parses (cached) and evaluates `expr` against `data`, the decoded JSON step input."""
    return parse_condition(expr).evaluate(data)
