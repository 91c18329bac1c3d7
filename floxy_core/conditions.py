"""Condition expressions: Go's `text/template` language, as the reference's conditions use it.

A condition is template text rendered against the top-level JSON object of the step input (any other
input counts as an empty object). The rendered text is trimmed and read like Go's
`strconv.ParseBool`: `1 t T TRUE true True` are true, `0 f F FALSE false False` are false, anything
else is an error. Text outside `{{ }}` is copied as is; `{{-` and `-}}` trim the whitespace next to
them (the space after `{{-` / before `-}}` is required), and `{{/* comments */}}` print nothing.

Actions::

    {{ pipeline }}                         prints the value ("<no value>" for a missing or null one)
    {{ if p }} A {{ else if q }} B {{ else }} C {{ end }}
    {{ with p }} A {{ else with q }} B {{ else }} C {{ end }}     A runs with dot set to p's value
    {{ range p }} A {{ else }} B {{ end }}  p is a list, an object (keys in sorted order), an
                                           integer n (0..n-1) or nil; B runs when nothing iterates
    {{ range $i, $v := p }}  {{ break }}  {{ continue }}
    {{ $x := p }}  {{ $x = p }}            declare / assign; a variable lives until the `end` of the
                                           control structure it was declared in; `$` is the data

Inside an action::

    .  .a  .a.b.c  $x.a  (p).a             the dot, fields (a missing key is "no value"), chains
    "go \\"escapes\\""  `raw`  'c'          strings; a character constant is its code point
    1  -2  0x1F  0o17  017  0b11  1_000    integers (exact, any size)
    3.5  1e3  .5  0x1p-2                   floats (exact decimals; hex floats are binary floats)
    true  false  nil
    fn arg...  (fn arg...)  x | fn arg...  calls, nested calls, pipelines (x is fn's last argument)

Functions: the reference's `eq ne gt lt ge le` (two arguments, loose numeric comparison; where the
reference panics, two lists or two objects compare structurally) and `contains hasPrefix
hasSuffix`, and Go's builtins `and or not len index slice print printf println html js urlquery`
(`and`/`or` short-circuit and return the deciding argument). `printf` follows Go's `fmt` verbs for
the values JSON gives: a JSON integer is a Go `int`, any other number a `float64`, lists
`[]interface {}` and objects `map[string]interface {}`. Refused when parsing: `define`,
`template`, `block` (a condition is one template), `call` and method calls (JSON data holds no
functions), complex numbers, and any other name: names, arity and variables are checked here, so
a workflow file is rejected when it is loaded.

An expression is data, never code: it is tokenized and parsed into a small immutable tree, and the
evaluator only walks that tree. Work is bounded by the limits below, so a hostile workflow file can
cost at most `MAX_STEPS` steps per evaluation and `MAX_OUTPUT_LEN` characters of text.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Final, NoReturn

from floxy_core.errors import ConditionError
from floxy_core.records import field, record

__all__ = ["Condition", "evaluate_condition", "parse_condition"]

MAX_EXPR_LEN: Final = 4096
MAX_DEPTH: Final = 32
"""Parentheses, pipeline stages and nested if/with/range: bounds the parser's recursion."""
MAX_STRING_LEN: Final = 1024
MAX_TOKENS: Final = 256
MAX_OUTPUT_LEN: Final = 65536
"""Caps the rendered text and every string a function builds: printing a large input several
times, or doubling a string in a loop, must not exhaust memory."""
MAX_ITERATIONS: Final = 10_000
"""Range iterations per evaluation, all loops together: nested ranges multiply."""
MAX_STEPS: Final = 100_000
"""Nodes evaluated per evaluation: a few tens of milliseconds at most."""

_CACHE_SIZE: Final = 1000
_SHOWN_OUTPUT_LEN: Final = 200
_SPACE: Final = " \t\r\n"
_TRUE: Final = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_FALSE: Final = frozenset({"0", "f", "F", "FALSE", "false", "False"})
_KEYWORDS: Final = frozenset(
    {"if", "else", "end", "range", "with", "break", "continue", "define", "template", "block"}
)
_NUMBER: Final = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_DECIMAL_INT: Final = re.compile(r"[0-9](?:_?[0-9])*")
_ESCAPES: Final = {
    "a": "\a",
    "b": "\b",
    "f": "\f",
    "n": "\n",
    "r": "\r",
    "t": "\t",
    "v": "\v",
    "\\": "\\",
}
_NAMED: Final = {v: "\\" + k for k, v in _ESCAPES.items() if k != "\\"}
_ZERO: Final = Decimal(0)
_ONE: Final = Decimal(1)


class _NoValue:
    """What a missing field yields; printed it is `<no value>`; as an argument it is nil."""

    def __repr__(self) -> str:
        return "<no value>"


_NO_VALUE: Final = _NoValue()


# --- tokens and syntax tree ------------------------------------------------------------------


class _Token:
    """kind: text open close ident keyword field dot variable string number bool nil lparen
    rparen pipe declare assign comma."""

    __slots__ = ("end", "kind", "path", "pos", "text", "value")

    def __init__(
        self, kind: str, pos: int, text: str, value: object = None, path: tuple[str, ...] = ()
    ) -> None:
        self.kind = kind
        self.pos = pos
        self.text = text  # the source text (the literal text for `text` tokens)
        self.value = value  # decoded literal value
        self.path = path  # field names
        self.end = pos + len(text)


@record(frozen=True)
class _Literal:
    value: object
    pos: int


@record(frozen=True)
class _Field:
    """`.a.b` relative to the dot; `.` itself has an empty path."""

    path: tuple[str, ...]
    pos: int


@record(frozen=True)
class _Var:
    name: str
    path: tuple[str, ...]
    pos: int


@record(frozen=True)
class _Chain:
    """`(pipeline).a.b`."""

    node: _Node
    path: tuple[str, ...]
    pos: int


@record(frozen=True)
class _Call:
    name: str
    args: tuple[_Node, ...]
    pos: int


@record(frozen=True)
class _Pipe:
    """A pipeline (commands folded into nested calls) and the variables it declares or sets."""

    decl: tuple[str, ...]
    assign: bool
    node: _Node
    pos: int


@record(frozen=True)
class _Action:
    pipe: _Pipe


@record(frozen=True)
class _If:
    """`if` or, with `with_`, `with` (which also moves the dot)."""

    with_: bool
    pipe: _Pipe
    then: tuple[_Part, ...]
    other: tuple[_Part, ...] | None
    pos: int


@record(frozen=True)
class _Range:
    pipe: _Pipe
    body: tuple[_Part, ...]
    other: tuple[_Part, ...] | None
    pos: int


@record(frozen=True)
class _Jump:
    """`break` or `continue`."""

    brk: bool
    pos: int


_Node = _Literal | _Field | _Var | _Chain | _Call | _Pipe
_Part = str | _Action | _If | _Range | _Jump  # literal text, or an action


# --- lexer -----------------------------------------------------------------------------------


def _is_word_char(c: str) -> bool:
    return c == "_" or c.isalnum()


def _is_space(c: str) -> bool:
    return c != "" and c in _SPACE


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
            elif c in "()|,=":
                kind = {"(": "lparen", ")": "rparen", "|": "pipe", ",": "comma", "=": "assign"}[c]
                self.emit(_Token(kind, pos, c))
                pos += 1
            elif c == ":":
                if expr[pos + 1 : pos + 2] != "=":
                    self.fail("expected :=", pos)
                self.emit(_Token("declare", pos, ":="))
                pos += 2
            elif c == '"':
                pos = self.string(pos)
            elif c == "`":
                pos = self.raw_string(pos)
            elif c == "'":
                pos = self.char(pos)
            elif c in "+-" or c.isdigit() or (c == "." and expr[pos + 1 : pos + 2].isdigit()):
                pos = self.number(pos)
            elif c == ".":
                pos = self.field(pos)
            elif c == "$":
                name = self.run_of_word(pos + 1, "$")
                self.emit(_Token("variable", pos, name))
                pos += len(name)
            elif c == "_" or c.isalpha():
                pos = self.word(pos)
            else:
                self.fail(f"unexpected {_quote(c)}", pos)

    def run_of_word(self, pos: int, prefix: str = "") -> str:
        end = pos
        while end < len(self.expr) and _is_word_char(self.expr[end]):
            end += 1
        return prefix + self.expr[pos:end]

    def word(self, pos: int) -> int:
        name = self.run_of_word(pos)
        if name in _KEYWORDS:
            self.emit(_Token("keyword", pos, name))
        elif name in ("true", "false"):
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
        if not names:
            self.emit(_Token("dot", pos, "."))
            return pos + 1
        self.emit(_Token("field", pos, expr[pos:end], path=tuple(names)))
        return end

    def number(self, pos: int) -> int:
        """Go's number scanner: sign, base prefix, digits with `_`, fraction, exponent."""
        expr, i = self.expr, pos
        if expr[i] in "+-":
            i += 1
        digits = "0123456789_"
        if expr[i : i + 1] == "0" and expr[i + 1 : i + 2] in tuple("xXoObB"):
            digits = {"x": "0123456789abcdefABCDEF_", "o": "01234567_", "b": "01_"}[
                expr[i + 1].lower()
            ]
            i += 2
        i = self.run_of(i, digits)
        if expr[i : i + 1] == ".":
            i = self.run_of(i + 1, digits)
        exponent = {"0123456789_": "eE", "0123456789abcdefABCDEF_": "pP"}.get(digits, "")
        if exponent and expr[i : i + 1] in tuple(exponent):
            i += 1
            if expr[i : i + 1] in ("+", "-"):
                i += 1
            i = self.run_of(i, "0123456789_")
        text = expr[pos:i]
        if expr[i : i + 1] == "i":
            self.fail(f"complex numbers are not supported: {_quote(text + 'i')}", pos)
        if _is_word_char(expr[i : i + 1]) or expr[i : i + 1] == ".":
            self.fail(f"bad number syntax: {_quote(expr[pos : i + 1])}", pos)
        value = _number_value(text)
        if value is None:
            self.fail(f"illegal number syntax: {_quote(text)}", pos)
        self.emit(_Token("number", pos, text, value))
        return i

    def run_of(self, i: int, chars: str) -> int:
        while i < len(self.expr) and self.expr[i] in chars:
            i += 1
        return i

    def char(self, start: int) -> int:
        """A Go character constant: its value is the code point, an integer."""
        expr = self.expr
        pos = start + 1
        if expr[pos : pos + 1] == "\\":
            value, pos = self.escape(pos, "'")
        elif pos < len(expr) and expr[pos] not in "'\n":
            value, pos = ord(expr[pos]), pos + 1
        else:
            self.fail("malformed character constant", start)
        if expr[pos : pos + 1] != "'":
            close = expr.find("'", pos)
            if close < 0 or "\n" in expr[pos:close]:
                self.fail("unterminated character constant", start)
            self.fail(f"malformed character constant: {expr[start : close + 1]}", start)
        self.emit(_Token("number", start, expr[start : pos + 1], value))
        return pos + 1

    def escape(self, pos: int, quote: str) -> tuple[int, int]:
        """The escape at `pos` (a backslash): its code point (a byte for \\x, octal) and end."""
        expr = self.expr
        esc = expr[pos + 1 : pos + 2]
        if esc in _ESCAPES:
            return ord(_ESCAPES[esc]), pos + 2
        if esc == quote:
            return ord(quote), pos + 2
        if esc and esc in "xuU":
            width = {"x": 2, "u": 4, "U": 8}[esc]
            digits = expr[pos + 2 : pos + 2 + width]
            if len(digits) != width or any(d not in "0123456789abcdefABCDEF" for d in digits):
                self.fail(f"invalid escape \\{esc} in string", pos)
            code = int(digits, 16)
            if esc != "x" and (code > 0x10FFFF or 0xD800 <= code < 0xE000):
                self.fail(f"invalid escape \\{esc}{digits} in string", pos)
            return code, pos + 2 + width
        if esc and esc in "01234567":
            digits = expr[pos + 1 : pos + 4]
            if len(digits) != 3 or any(d not in "01234567" for d in digits) or digits > "377":
                self.fail(f"invalid escape \\{digits} in string", pos)
            return int(digits, 8), pos + 4
        self.fail(f"invalid escape \\{esc} in string", pos)

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
            byte_escape = expr[pos + 1 : pos + 2] in tuple("x01234567")
            code, pos = self.escape(pos, '"')
            if byte_escape:
                buf.append(code)
            else:
                buf += chr(code).encode()
        return self.literal(start, pos + 1, _text(bytes(buf)))

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


def _underscores_ok(text: str) -> bool:
    """Go's rule: `_` only between digits, or between a base prefix and a digit."""
    body = text.lstrip("+-")
    saw, i, hexa = "^", 0, False
    if body[:2].lower() in ("0x", "0o", "0b"):
        saw, i, hexa = "0", 2, body[1] in "xX"
    for c in body[i:]:
        if c.isdigit() or (hexa and c in "abcdefABCDEF"):
            saw = "0"
        elif c == "_":
            if saw != "0":
                return False
            saw = "_"
        elif saw == "_":
            return False
        else:
            saw = "!"
    return saw != "_"


def _number_value(text: str) -> object:
    """A Go number literal's value: int, float when a float64 holds its digits, else Decimal."""
    if not _underscores_ok(text):
        return None
    sign = -1 if text.startswith("-") else 1
    body = text.lstrip("+-").replace("_", "")
    prefix = body[:2].lower()
    try:
        if prefix == "0x" and any(c in body for c in ".pP"):
            if "p" not in body.lower():
                return None  # Go: a hex mantissa needs a 'p' exponent
            return sign * float.fromhex(body)
        if prefix in ("0x", "0o", "0b"):
            return sign * int(body[2:], {"0x": 16, "0o": 8, "0b": 2}[prefix]) if body[2:] else None
        if _DECIMAL_INT.fullmatch(body):
            if len(body) > 1 and body[0] == "0":  # 017 is octal, as in Go
                return sign * int(body, 8) if all(c in "01234567" for c in body) else None
            return sign * int(body)
        if not body or body in (".",) or not _NUMBER.fullmatch(body):
            return None
        value = Decimal(body)
        binary = float(body)
        if math.isfinite(binary) and Decimal(repr(binary)) == value:
            return sign * binary  # Go's float64, so printf rounds it as Go does; compares exactly
        return -value if sign < 0 else value
    except (ValueError, InvalidOperation, OverflowError):
        return None


# --- parser ----------------------------------------------------------------------------------


@record(frozen=True)
class _Func:
    min_args: int
    max_args: int | None  # None: variadic
    impl: Callable[[Sequence[object]], object] | None  # None: and/or, which short-circuit


class _Parser:
    """Recursive descent over the tokens; every name, arity and variable is checked here."""

    def __init__(self, expr: str, tokens: list[_Token]) -> None:
        self.expr = expr
        self.tokens = tokens
        self.tokens.append(_Token("eof", len(expr), ""))
        self.i = 0
        self.vars = ["$"]  # variables in scope, as Go's parser keeps them
        self.range_depth = 0
        self.term_pos = 0

    def fail(self, message: str, pos: int) -> NoReturn:
        raise ConditionError(f"parse condition: {message} at {pos}", expr=self.expr, position=pos)

    def peek(self, ahead: int = 0) -> _Token:
        # The token list ends with `eof`, and every action with `close`: this never runs off.
        return self.tokens[min(self.i + ahead, len(self.tokens) - 1)]

    def advance(self) -> _Token:
        token = self.tokens[self.i]
        self.i += 1
        return token

    def unexpected(self, token: _Token, context: str = "") -> NoReturn:
        where = f" in {context}" if context else ""
        self.fail(f"unexpected {_quote(token.text)}{where}", token.pos)

    def expect_close(self) -> None:
        token = self.peek()
        if token.kind != "close":
            self.unexpected(token)
        self.advance()

    def template(self) -> tuple[_Part, ...]:
        parts, term = self.parts(0)
        if term != "eof":
            self.fail(f"unexpected {{{{{term}}}}}", self.term_pos)
        return parts

    def parts(self, depth: int) -> tuple[tuple[_Part, ...], str]:
        """Parts up to `{{end}}`, `{{else` or the end of the text; returns which one ended it."""
        parts: list[_Part] = []
        while self.peek().kind != "eof":
            token = self.advance()
            if token.kind == "text":
                parts.append(token.text)
                continue
            head = self.peek()
            if head.kind == "keyword":
                word = head.text
                self.advance()
                if word in ("end", "else"):
                    self.term_pos = head.pos
                    if word == "end":
                        self.expect_close()
                    return tuple(parts), word
                if word in ("if", "with", "range"):
                    parts.append(self.control(word, head, depth + 1))
                elif word in ("break", "continue"):
                    if self.range_depth == 0:
                        self.fail(f"{{{{{word}}}}} outside {{{{range}}}}", head.pos)
                    self.expect_close()
                    parts.append(_Jump(word == "break", head.pos))
                else:
                    self.fail(
                        f"{_quote(word)} is not supported (a condition is one template)", head.pos
                    )
                continue
            pipe = self.pipeline("command", 0)
            self.expect_close()
            parts.append(_Action(pipe))
        return tuple(parts), "eof"

    def control(self, word: str, head: _Token, depth: int) -> _If | _Range:
        if depth > MAX_DEPTH:
            self.fail(f"nesting deeper than {MAX_DEPTH}", head.pos)
        mark = len(self.vars)
        pipe = self.pipeline(word, 0)
        self.expect_close()
        self.range_depth += word == "range"
        body, term = self.parts(depth)
        self.range_depth -= word == "range"
        other: tuple[_Part, ...] | None = None
        if term == "eof":
            self.fail(f"unexpected EOF: {{{{{word}}}}} has no {{{{end}}}}", head.pos)
        if term == "else":
            after = self.peek()
            if after.kind == "keyword" and after.text in ("if", "with"):
                if after.text != word:
                    self.unexpected(after, "input")
                self.advance()
                other = (self.control(word, after, depth + 1),)
            else:
                self.expect_close()
                other, term = self.parts(depth)
                if term == "eof":
                    self.fail(f"unexpected EOF: {{{{{word}}}}} has no {{{{end}}}}", head.pos)
                if term != "end":
                    self.fail("expected end; found {{else}}", self.term_pos)
        del self.vars[mark:]
        if word == "range":
            return _Range(pipe, body, other, head.pos)
        return _If(word == "with", pipe, body, other, head.pos)

    def pipeline(self, context: str, depth: int) -> _Pipe:
        start = self.peek()
        decl: list[str] = []
        assign = False
        while self.peek().kind == "variable":
            variable, after = self.peek(), self.peek(1)
            if after.kind in ("declare", "assign"):
                self.i += 2
                decl.append(variable.text)
                assign = after.kind == "assign"
                break
            if after.kind != "comma":
                if decl:
                    self.fail("range can only initialize variables", variable.pos)
                break
            self.i += 2
            decl.append(variable.text)
            if context != "range" or len(decl) > 1:
                self.fail(f"too many declarations in {context}", after.pos)
            if self.peek().kind != "variable":
                self.fail("range can only initialize variables", self.peek().pos)
        if assign:
            for name in decl:
                if name not in self.vars:
                    self.fail(f"undefined variable {_quote(name)}", start.pos)
        if self.peek().kind in ("pipe", "rparen", "close", "eof"):
            self.fail(f"missing value for {context}", self.peek().pos)
        node = self.command(depth, None, 1, context)
        stage = 1
        while self.peek().kind == "pipe":
            pipe = self.advance()
            stage += 1
            depth += 1  # each stage wraps the previous one: it nests like a parenthesis
            if depth > MAX_DEPTH:
                self.fail(f"nesting deeper than {MAX_DEPTH}", pipe.pos)
            node = self.command(depth, node, stage, context)
        if not assign:
            self.vars.extend(decl)
        return _Pipe(tuple(decl), assign, node, start.pos)

    def command(self, depth: int, piped: _Node | None, stage: int, context: str) -> _Node:
        first = self.peek()
        if first.kind in ("pipe", "rparen", "close", "eof"):
            self.fail("missing value for command", first.pos)
        if first.kind == "ident":
            self.advance()
            args: list[_Node] = []
            while self.peek().kind not in ("pipe", "rparen", "close", "eof"):
                args.append(self.operand(depth))
            if piped is not None:
                args.append(piped)
            return self.call(first, args)
        if piped is not None:
            self.fail(f"non executable command in pipeline stage {stage}", first.pos)
        node = self.operand(depth)
        after = self.peek()
        if after.kind not in ("pipe", "rparen", "close", "eof"):
            if after.kind in ("declare", "assign", "comma", "keyword"):
                self.unexpected(after, context)
            self.fail(f"can't give argument to non-function {first.text}", after.pos)
        if first.kind == "nil":
            self.fail("nil is not a command", first.pos)
        return node

    def operand(self, depth: int) -> _Node:
        token = self.advance()
        node: _Node
        if token.kind == "field":
            node = _Field(token.path, token.pos)
        elif token.kind == "dot":
            node = _Field((), token.pos)
        elif token.kind == "variable":
            if token.text not in self.vars:
                self.fail(f"undefined variable {_quote(token.text)}", token.pos)
            node = _Var(token.text, (), token.pos)
        elif token.kind in ("string", "number", "bool", "nil"):
            node = _Literal(token.value, token.pos)
        elif token.kind == "ident":
            node = self.call(token, [])
        elif token.kind == "lparen":
            if depth + 1 > MAX_DEPTH:
                self.fail(f"nesting deeper than {MAX_DEPTH}", token.pos)
            pipe = self.pipeline("parenthesized pipeline", depth + 1)
            closing = self.peek()
            if closing.kind in ("close", "eof"):
                self.fail("unclosed left paren", token.pos)
            if closing.kind != "rparen":
                self.unexpected(closing)
            self.advance()
            node = pipe if pipe.decl else pipe.node
        else:
            self.unexpected(token, "operand")
        after, last = self.peek(), self.tokens[self.i - 1]
        if after.kind != "field" or after.pos != last.end:
            return node
        self.advance()
        if isinstance(node, _Field):
            return _Field(node.path + after.path, node.pos)
        if isinstance(node, _Var):
            return _Var(node.name, after.path, node.pos)
        if token.kind != "lparen":
            self.fail(f"unexpected {_quote(after.text)} after term {_quote(token.text)}", after.pos)
        return _Chain(node, after.path, after.pos)

    def call(self, name: _Token, args: list[_Node]) -> _Call:
        func = _FUNCS.get(name.text)
        if func is None:
            if name.text == "call":
                self.fail('"call" is not supported (JSON data holds no functions)', name.pos)
            self.fail(f"function {_quote(name.text)} not defined", name.pos)
        if len(args) < func.min_args or (func.max_args is not None and len(args) > func.max_args):
            if func.max_args is None:
                want = f"at least {func.min_args}"
            elif func.max_args == func.min_args:
                want = str(func.max_args)
            else:
                want = f"{func.min_args} to {func.max_args}"
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


class _Break(Exception):
    """`{{break}}`: leaves the innermost range."""


class _Continue(Exception):
    """`{{continue}}`: ends this iteration of the innermost range."""


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


def _go_type(value: object) -> str:
    """The Go type the value has in a template: what `%T` and fmt's error forms print."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float | Decimal):
        return "float64"
    if isinstance(value, str):
        return "string"
    if isinstance(value, Mapping):
        return "map[string]interface {}"
    if isinstance(value, list | tuple):
        return "[]interface {}"
    return "<nil>"


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


def _bytes(text: str) -> bytes:
    """A Go string's bytes: `slice` may cut a character, kept as surrogate escapes."""
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass")


def _text(data: bytes) -> str:
    return data.decode("utf-8", "surrogateescape")


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
        return None if math.isnan(value) or math.isinf(value) else Decimal(repr(value))
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


def _digits(value: Decimal) -> tuple[bool, str, int]:
    """(negative, significant digits without trailing zeros, dp): value = 0.digits * 10**dp."""
    sign, digit_tuple, exponent = value.as_tuple()
    assert isinstance(exponent, int)
    digits = "".join(map(str, digit_tuple)).lstrip("0")
    stripped = digits.rstrip("0")
    return bool(sign), stripped, len(digits) + exponent if stripped else 0


def _round(digits: str, dp: int, keep: int) -> tuple[str, int]:
    """Rounds to `keep` leading digits, half to even (Go's strconv on the exact value)."""
    if keep < 0 or keep >= len(digits):
        return digits, dp
    head, rest = digits[:keep], digits[keep:]
    half = rest[0] == "5" and rest[1:].strip("0") == ""
    up = rest[0] > "5" or (rest[0] == "5" and not half) or (half and head[-1:] in tuple("13579"))
    if not up:
        head = head.rstrip("0")
        return head, dp if head else 0
    head = head.rstrip("9")
    if not head:
        return "1", dp + 1
    return head[:-1] + str(int(head[-1]) + 1), dp


def _exact(value: float | Decimal, shortest: bool) -> tuple[bool, str, int]:
    if isinstance(value, float):
        # Shortest: the digits that read back as the float; otherwise its exact binary value.
        return _digits(Decimal(repr(value)) if shortest else Decimal(value))
    return _digits(value)


def _fmt_e(digits: str, dp: int, prec: int, letter: str) -> str:
    first = digits[:1] or "0"
    tail = digits[1 : prec + 1].ljust(prec, "0") if prec > 0 else ""
    exp = dp - 1 if digits else 0
    return f"{first}{'.' + tail if prec > 0 else ''}{letter}{'-' if exp < 0 else '+'}{abs(exp):02d}"


def _fmt_f(digits: str, dp: int, prec: int) -> str:
    whole = (digits[:dp].ljust(dp, "0") if dp > 0 else "") or "0"
    if prec <= 0:
        return whole
    frac = "".join(digits[j] if 0 <= j < len(digits) else "0" for j in range(dp, dp + prec))
    return f"{whole}.{frac}"


def _float_text(value: float | Decimal, verb: str, prec: int) -> str:
    """strconv.FormatFloat for e E f F g G (prec -1: shortest), sign included."""
    if isinstance(value, float) and (math.isinf(value) or math.isnan(value)):
        return "NaN" if math.isnan(value) else ("+Inf" if value > 0 else "-Inf")
    neg, digits, dp = _exact(value, prec < 0)
    sign = "-" if neg else ""
    lower = verb.lower()
    if lower == "e":
        if prec >= 0:
            digits, dp = _round(digits, dp, prec + 1)
        else:
            prec = max(len(digits) - 1, 0)
        return sign + _fmt_e(digits, dp, prec, "E" if verb == "E" else "e")
    if lower == "f":
        if prec >= 0:
            digits, dp = _round(digits, dp, dp + prec)
        else:
            prec = max(len(digits) - dp, 0)
        return sign + _fmt_f(digits, dp, prec)
    shortest = prec < 0
    if not shortest:
        prec = max(prec, 1)
        digits, dp = _round(digits, dp, prec)
    nd = len(digits)
    eprec = 6 if shortest else (nd if prec > nd >= dp else prec)
    if shortest:
        prec = nd
    if dp - 1 < -4 or dp - 1 >= eprec:
        return sign + _fmt_e(digits, dp, min(prec, nd) - 1, "E" if verb == "G" else "e")
    return sign + _fmt_f(digits, dp, max((nd if prec > dp else prec) - dp, 0))


def _format_number(value: float | Decimal) -> str:
    """Go's `%v` for a float64: shortest digits, exponent form from 1e+06 and below 1e-04."""
    return _float_text(value, "g", -1)


def _sprint(value: object) -> str:
    """Go's `fmt.Sprint` of one JSON value: how the reference prints and compares."""
    if value is None or value is _NO_VALUE:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float | Decimal):
        return _format_number(value)
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping):
        items = sorted(value.items(), key=lambda item: str(item[0]))
        return "map[" + " ".join(f"{k}:{_sprint(v)}" for k, v in items) + "]"
    if isinstance(value, list | tuple):
        return "[" + " ".join(_sprint(v) for v in value) + "]"
    return str(value)


def _print_value(value: object) -> str:
    """An action's output: Go's template prints a missing or nil value as `<no value>`."""
    if value is None or value is _NO_VALUE:
        return "<no value>"
    return _sprint(value)


def _sprint_args(args: Sequence[object], line: bool = False) -> str:
    """fmt.Sprint (a space between operands when neither is a string) or fmt.Sprintln."""
    if line:
        return " ".join(_sprint(a) for a in args) + "\n"
    out: list[str] = []
    prev_string = False
    for i, arg in enumerate(args):
        is_string = isinstance(arg, str)
        if i > 0 and not is_string and not prev_string:
            out.append(" ")
        out.append(_sprint(arg))
        prev_string = is_string
    return "".join(out)


def _quote(text: str, ascii_only: bool = False, quote: str = '"') -> str:
    """Go's strconv.Quote (QuoteToASCII with `ascii_only`; quote `'` for runes)."""
    if text.isascii() and text.isprintable() and quote not in text and "\\" not in text:
        return quote + text + quote
    return quote + "".join(_escape_rune(c, quote, ascii_only) for c in text) + quote


def _escape_rune(c: str, quote: str, ascii_only: bool) -> str:
    code = ord(c)
    if c == quote or c == "\\":
        return "\\" + c
    if 0xD800 <= code < 0xE000:  # a byte of invalid UTF-8 (a cut character)
        return "".join(f"\\x{b:02x}" for b in _bytes(c))
    if c.isprintable() and (code < 0x80 or not ascii_only):
        return c
    if c in _NAMED:
        return _NAMED[c]
    if code < 0x20 or code == 0x7F:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


# --- printf ----------------------------------------------------------------------------------


class _Flags:
    """One verb's flags, width and precision, as fmt's `pp.fmt` holds them."""

    __slots__ = ("minus", "plus", "plus_v", "prec", "sharp", "sharp_v", "space", "wid", "zero")

    def __init__(self) -> None:
        self.plus = self.minus = self.sharp = self.space = self.zero = False
        self.sharp_v = self.plus_v = False
        self.wid: int | None = None
        self.prec: int | None = None


_PLAIN: Final = _Flags()
_TOO_LARGE: Final = 1_000_000  # fmt's tooLarge bound on widths, precisions and arg indexes


def _padding(n: int, f: _Flags) -> str:
    return ("0" if f.zero and not f.minus else " ") * n if n > 0 else ""


def _pad(text: str, f: _Flags) -> str:
    if not f.wid:
        return text
    pad = _padding(f.wid - len(text), f)
    return text + pad.replace("0", " ") if f.minus else pad + text


def _pad_spaces(text: str, f: _Flags) -> str:
    """Padding where fmt turns the zero flag off (numbers that handle zeros themselves)."""
    if not f.wid:
        return text
    pad = " " * (f.wid - len(text))
    return text + pad if f.minus else pad + text


def _fmt_int(value: int, verb: str, f: _Flags) -> str:
    if verb in "vd" or verb in "bboOxX":
        base = {"v": 10, "d": 10, "b": 2, "o": 8, "O": 8, "x": 16, "X": 16}[verb]
        neg = value < 0
        u = -value if neg else value
        digits = format(u, {10: "d", 2: "b", 8: "o", 16: "X" if verb == "X" else "x"}[base])
        if f.prec is not None:
            if f.prec == 0 and u == 0:
                return " " * (f.wid or 0)
            digits = digits.rjust(f.prec, "0")
        elif f.zero and not f.minus and f.wid is not None:
            digits = digits.rjust(f.wid - (neg or f.plus or f.space), "0")
        if f.sharp and base == 2:
            digits = "0b" + digits
        elif f.sharp and base == 8 and not digits.startswith("0"):
            digits = "0" + digits
        elif f.sharp and base == 16:
            digits = ("0X" if verb == "X" else "0x") + digits
        if verb == "O":
            digits = "0o" + digits
        sign = "-" if neg else "+" if f.plus else " " if f.space else ""
        return _pad_spaces(sign + digits, f)
    if verb == "c":
        return _pad(chr(value) if _valid_rune(value) else "\ufffd", f)
    if verb == "q":
        rune = chr(value) if _valid_rune(value) else "\ufffd"
        return _pad(_quote(rune, f.plus, "'"), f)
    if verb == "U":
        u = value if value >= 0 else value + (1 << 64)
        text = "U+" + format(u, "X").rjust(max(4, f.prec or 0), "0")
        if f.sharp and u <= 0x10FFFF and _valid_rune(u) and chr(u).isprintable():
            text += f" '{chr(u)}'"
        return _pad_spaces(text, f)
    return _bad_verb(value, verb, f)


def _valid_rune(value: int) -> bool:
    return 0 <= value <= 0x10FFFF and not 0xD800 <= value < 0xE000


def _fmt_float(value: float | Decimal, verb: str, f: _Flags) -> str:
    if verb not in "vbgGxXfeEF":
        return _bad_verb(value, verb, f)
    prec = -1 if f.prec is None else f.prec
    if f.prec is None and verb in "feEF":
        prec = 6
    if verb == "b":
        num = _float_b(float(value))
    elif verb in "xX":
        num = _float_x(float(value), prec, verb)
    else:
        if prec > MAX_OUTPUT_LEN or (
            isinstance(value, Decimal) and abs(value.adjusted()) > MAX_OUTPUT_LEN
        ):
            raise _Fail(f"output longer than {MAX_OUTPUT_LEN} characters")
        num = _float_text(value, "g" if verb == "v" else verb, prec)
    num = num if num[0] in "+-" else "+" + num
    if f.space and num[0] == "+" and not f.plus:
        num = " " + num[1:]
    if num[1] in "IN":  # infinities and NaN are not padded with zeros
        if num[1] == "N" and not f.space and not f.plus:
            num = num[1:]
        return _pad_spaces(num, f)
    if f.sharp and verb != "b":
        num = _sharp_float(num, verb, prec)
    if f.plus or num[0] != "+":
        if f.zero and not f.minus and f.wid and f.wid > len(num):
            return num[0] + "0" * (f.wid - len(num)) + num[1:]
        return _pad(num, f)
    return _pad(num[1:], f)


def _sharp_float(num: str, verb: str, prec: int) -> str:
    """The `#` flag: always a decimal point, and %g keeps its trailing zeros."""
    digits = (6 if prec == -1 else prec) if verb in "vgGx" else 0
    tail = ""
    body = num
    for i in range(1, len(num)):
        if num[i] in "pP" or (num[i] in "eE" and verb not in "xX"):
            body, tail = num[:i], num[i:]
            break
    seen_nonzero = False
    for c in body[1:]:
        if c == ".":
            continue
        seen_nonzero = seen_nonzero or c != "0"
        digits -= seen_nonzero
    if "." not in body:
        if len(body) == 2 and body[1] == "0":
            digits -= 1
        body += "."
    return body + "0" * max(digits, 0) + tail


def _float_b(value: float) -> str:
    """`%b`: decimalless mantissa and binary exponent, as strconv's 'b' format."""
    if value == 0:
        return ("-" if math.copysign(1, value) < 0 else "") + "0p-1074"
    mant, exp = math.frexp(abs(value))
    m, e = int(mant * (1 << 53)), exp - 53
    if e < -1074:
        m, e = m >> (-1074 - e), -1074
    return f"{'-' if value < 0 else ''}{m}p{'+' if e >= 0 else '-'}{abs(e)}"


def _float_x(value: float, prec: int, verb: str) -> str:
    """`%x`: strconv's hexadecimal 'x' format, `-0x1.8p+01`."""
    if math.isinf(value) or math.isnan(value):
        return "NaN" if math.isnan(value) else ("+Inf" if value > 0 else "-Inf")
    neg = math.copysign(1, value) < 0
    mant, exp = 0, 0
    if value != 0:
        frac, e2 = math.frexp(abs(value))
        mant, exp = int(frac * (1 << 53)) << 8, e2 - 1  # leading 1 at bit 60
    mask = (1 << 64) - 1
    if 0 <= prec < 15:
        shift = prec * 4
        extra = (mant << shift) & ((1 << 60) - 1)
        mant >>= 60 - shift
        if extra | (mant & 1) > 1 << 59:
            mant += 1
        mant <<= 60 - shift
        if mant & (1 << 61):
            mant >>= 1
            exp += 1
    digits = "0123456789ABCDEF" if verb == "X" else "0123456789abcdef"
    out = ["-" if neg else "", "0", verb, str((mant >> 60) & 1)]
    mant = (mant << 4) & mask
    if prec < 0 and mant:
        out.append(".")
        while mant:
            out.append(digits[(mant >> 60) & 15])
            mant = (mant << 4) & mask
    elif prec > 0:
        out.append(".")
        for _ in range(prec):
            out.append(digits[(mant >> 60) & 15])
            mant = (mant << 4) & mask
    out.append(f"{'P' if verb == 'X' else 'p'}{'-' if exp < 0 else '+'}{abs(exp):02d}")
    return "".join(out)


def _fmt_str(value: str, verb: str, f: _Flags) -> str:
    if verb in "vsq":
        if f.prec is not None:
            value = value[: f.prec]
        if verb == "s" or (verb == "v" and not f.sharp_v):
            return _pad(value, f)
        if f.sharp and _can_backquote(value):
            return _pad(f"`{value}`", f)
        return _pad(_quote(value, f.plus), f)
    if verb in "xX":
        data = _bytes(value)
        if f.prec is not None:
            data = data[: f.prec]
        if not data:
            return " " * (f.wid or 0)
        digits = "%02X" if verb == "X" else "%02x"
        prefix = ("0X" if verb == "X" else "0x") if f.sharp else ""
        if f.space:
            text = " ".join(prefix + digits % b for b in data)
        else:
            text = prefix + "".join(digits % b for b in data)
        return _pad(text, f)
    return _bad_verb(value, verb, f)


def _can_backquote(text: str) -> bool:
    return not any(
        (c < " " and c != "\t") or c in "`\x7f\ufeff" or "\ud800" <= c <= "\udfff" for c in text
    )


def _fmt_arg(value: object, verb: str, f: _Flags, top: bool = True) -> str:
    """fmt's printArg / printValue for one JSON value under one verb."""
    if value is None or value is _NO_VALUE:
        if not top:
            return "interface {}(nil)" if f.sharp_v else "<nil>"
        return _pad("<nil>", f) if verb in "Tv" else _bad_verb(None, verb, f)
    if verb == "T":
        return _pad(_go_type(value), f)
    if verb == "p":
        return _bad_verb(value, verb, f)
    if isinstance(value, bool):
        return _pad("true" if value else "false", f) if verb in "tv" else _bad_verb(value, verb, f)
    if isinstance(value, int):
        return _fmt_int(value, verb, f)
    if isinstance(value, float | Decimal):
        return _fmt_float(value, verb, f)
    if isinstance(value, str):
        return _fmt_str(value, verb, f)
    if isinstance(value, Mapping):
        keys = sorted(value, key=str)
        if f.sharp_v:
            inner = ", ".join(
                f"{_fmt_arg(k, verb, f, False)}:{_fmt_arg(value[k], verb, f, False)}" for k in keys
            )
            return "map[string]interface {}{" + inner + "}"
        inner = " ".join(
            f"{_fmt_arg(k, verb, f, False)}:{_fmt_arg(value[k], verb, f, False)}" for k in keys
        )
        return "map[" + inner + "]"
    if isinstance(value, list | tuple):
        if f.sharp_v:
            return "[]interface {}{" + ", ".join(_fmt_arg(v, verb, f, False) for v in value) + "}"
        return "[" + " ".join(_fmt_arg(v, verb, f, False) for v in value) + "]"
    return _bad_verb(value, verb, f)


def _bad_verb(value: object, verb: str, f: _Flags) -> str:
    """`%!d(string=abc)`: the wrong verb, the value's type and the value printed with %v."""
    if value is None:
        return f"%!{verb}(<nil>)"
    return f"%!{verb}({_go_type(value)}={_fmt_arg(value, 'v', f)})"


def _parse_num(fmt: str, i: int, end: int) -> tuple[int, bool, int]:
    num, found = 0, False
    while i < end and "0" <= fmt[i] <= "9":
        if num > _TOO_LARGE:
            return 0, False, end
        num, found, i = num * 10 + ord(fmt[i]) - 48, True, i + 1
    return num, found, i


class _Printf:
    """fmt.Sprintf's doPrintf, with its error forms (%!d(MISSING), %!(EXTRA ...))."""

    def __init__(self, fmt: str, args: Sequence[object]) -> None:
        self.fmt = fmt
        self.args = args
        self.arg_num = 0
        self.reordered = False
        self.good_arg_num = True

    def arg_number(self, i: int) -> tuple[int, bool]:
        """An explicit `[n]` argument index at `i`: returns the new position and whether found."""
        fmt = self.fmt
        if i >= len(fmt) or fmt[i] != "[":
            return i, False
        self.reordered = True
        close = fmt.find("]", i + 1)
        if close < 0:
            self.good_arg_num = False
            return i + 1, False
        index, ok, after = _parse_num(fmt, i + 1, close)
        if not ok or after != close:
            self.good_arg_num = False
            return close + 1, False
        if 1 <= index <= len(self.args):
            self.arg_num = index - 1
            return close + 1, True
        self.good_arg_num = False
        return close + 1, True

    def int_arg(self) -> int | None:
        """fmt's intFromArg: a `*` width or precision takes the next argument, an int."""
        if self.arg_num >= len(self.args):
            return None
        value = self.args[self.arg_num]
        self.arg_num += 1
        if isinstance(value, bool) or not isinstance(value, int) or abs(value) > _TOO_LARGE:
            return None
        return value

    def run(self) -> str:
        fmt, out, end, i = self.fmt, [], len(self.fmt), 0
        while i < end:
            self.good_arg_num = True
            start = i
            i = fmt.find("%", i)
            if i < 0:
                out.append(fmt[start:])
                break
            out.append(fmt[start:i])
            i += 1
            f = _Flags()
            while i < end and fmt[i] in "#0+- ":
                c = fmt[i]
                f.sharp |= c == "#"
                f.zero |= c == "0"
                f.plus |= c == "+"
                f.minus |= c == "-"
                f.space |= c == " "
                i += 1
            i, after_index = self.arg_number(i)
            if i < end and fmt[i] == "*":
                i += 1
                f.wid = self.int_arg()
                if f.wid is None:
                    out.append("%!(BADWIDTH)")
                elif f.wid < 0:
                    f.wid, f.minus = -f.wid, True
                after_index = False
            else:
                wid, found, i = _parse_num(fmt, i, end)
                f.wid = wid if found else None
                if after_index and found:
                    self.good_arg_num = False
            if i + 1 < end and fmt[i] == ".":
                i += 1
                if after_index:
                    self.good_arg_num = False
                i, after_index = self.arg_number(i)
                if i < end and fmt[i] == "*":
                    i += 1
                    f.prec = self.int_arg()
                    if f.prec is not None and f.prec < 0:
                        f.prec = None
                    if f.prec is None:
                        out.append("%!(BADPREC)")
                    after_index = False
                else:
                    prec, found, i = _parse_num(fmt, i, end)
                    f.prec = prec if found else 0
            if not after_index:
                i, after_index = self.arg_number(i)
            if i >= end:
                out.append("%!(NOVERB)")
                break
            verb = fmt[i]
            i += 1
            if (f.wid or 0) > MAX_OUTPUT_LEN or (f.prec or 0) > MAX_OUTPUT_LEN:
                raise _Fail(f"output longer than {MAX_OUTPUT_LEN} characters")
            if verb == "%":
                out.append("%")
            elif not self.good_arg_num:
                out.append(f"%!{verb}(BADINDEX)")
            elif self.arg_num >= len(self.args):
                out.append(f"%!{verb}(MISSING)")
            else:
                if verb == "v":
                    f.sharp_v, f.sharp = f.sharp, False
                    f.plus_v, f.plus = f.plus, False
                out.append(_fmt_arg(self.args[self.arg_num], verb, f))
                self.arg_num += 1
        if not self.reordered and self.arg_num < len(self.args):
            extra = ", ".join(
                "<nil>" if a is None else f"{_go_type(a)}={_fmt_arg(a, 'v', _PLAIN)}"
                for a in self.args[self.arg_num :]
            )
            out.append(f"%!(EXTRA {extra})")
        return "".join(out)


# --- functions -------------------------------------------------------------------------------


def _deep_equal(a: object, b: object) -> bool:
    """Structural equality of two JSON values (where the reference's `==` panics)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, int | float | Decimal) and isinstance(b, int | float | Decimal):
        return _to_decimal(a) == _to_decimal(b)
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(_deep_equal(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(_deep_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, str) and isinstance(b, str):
        return a == b
    return a is None and b is None


def _equal(a: object, b: object) -> bool:
    if a is None and b is None:
        return True
    if a is None or b is None:
        number = _to_decimal(b if a is None else a)
        return number is not None and number == 0
    if (isinstance(a, Mapping) and isinstance(b, Mapping)) or (
        isinstance(a, list | tuple) and isinstance(b, list | tuple)
    ):
        return _deep_equal(a, b)
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
        return len(value) if value.isascii() else len(_bytes(value))  # Go counts bytes
    if isinstance(value, Mapping | list | tuple):
        return len(value)
    raise _Fail(f"len of {_type_name(value)}")


def _index_arg(key: object, cap: int, what: str) -> int:
    if key is None:
        raise _Fail(f"cannot index {what} with nil")
    if isinstance(key, bool) or not isinstance(key, int):
        raise _Fail(f"cannot index {what} with {_type_name(key)}")
    if not 0 <= key <= cap:
        raise _Fail(f"index out of range: {key}")
    return key


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
            seq: Sequence[object] = _bytes(item)  # Go indexes bytes
        elif isinstance(item, list | tuple):
            seq = item
        else:
            raise _Fail(f"can't index item of type {_type_name(item)}")
        x = _index_arg(key, len(seq), _type_name(item))
        if x == len(seq):
            raise _Fail(f"index out of range: {x}")
        item = seq[x]
    return item


def _slice(args: Sequence[object]) -> object:
    item, indexes = args[0], args[1:]
    if item is None:
        raise _Fail("slice of untyped nil")
    if isinstance(item, str):
        if len(indexes) == 3:
            raise _Fail("cannot 3-index slice a string")
        seq: bytes | Sequence[object] = _bytes(item)
    elif isinstance(item, list | tuple):
        seq = item
    else:
        raise _Fail(f"can't slice item of type {_type_name(item)}")
    bounds = [0, len(seq), len(seq)]
    for i, key in enumerate(indexes):
        bounds[i] = _index_arg(key, len(seq), "slice/array")
    if bounds[0] > bounds[1]:
        raise _Fail(f"invalid slice index: {bounds[0]} > {bounds[1]}")
    if len(indexes) == 3 and bounds[1] > bounds[2]:
        raise _Fail(f"invalid slice index: {bounds[1]} > {bounds[2]}")
    part = seq[bounds[0] : bounds[1]]
    return _text(part) if isinstance(part, bytes) else list(part)


def _printf(args: Sequence[object]) -> object:
    fmt = args[0]
    if not isinstance(fmt, str):
        raise _Fail(f"format must be a string, got {_type_name(fmt)}")
    return _Printf(fmt, args[1:]).run()


def _escaper_arg(args: Sequence[object]) -> str:
    """Go's evalArgs for html/js/urlquery: one string as is, anything else through Sprint."""
    if len(args) == 1 and isinstance(args[0], str):
        return args[0]
    return _sprint_args(args)


_HTML: Final = {ord('"'): "&#34;", ord("'"): "&#39;", ord("&"): "&amp;", ord("<"): "&lt;"}
_HTML_ALL: Final = {**_HTML, ord(">"): "&gt;", 0: "\ufffd"}
_JS: Final = {"\\": "\\\\", "'": "\\'", '"': '\\"', "<": "\\u003C", ">": "\\u003E"}
_JS_ALL: Final = {**_JS, "&": "\\u0026", "=": "\\u003D"}
_URL_SAFE: Final = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~")


def _html(args: Sequence[object]) -> object:
    return _escaper_arg(args).translate(_HTML_ALL)


def _js_char(c: str) -> str:
    if c in _JS_ALL:
        return _JS_ALL[c]
    if c < " ":
        return f"\\u00{ord(c):02X}"
    if c < "\x80" or c.isprintable() or "\udc80" <= c <= "\udcff":
        return c
    return f"\\u{ord(c):04X}"


def _js(args: Sequence[object]) -> object:
    text = _escaper_arg(args)
    if text.isalnum() and text.isascii():
        return text
    return "".join(_js_char(c) for c in text)


def _urlquery(args: Sequence[object]) -> object:
    out = []
    for b in _bytes(_escaper_arg(args)):
        out.append(chr(b) if b in _URL_SAFE else "+" if b == 0x20 else f"%{b:02X}")
    return "".join(out)


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
    "slice": _Func(1, 4, _slice),
    "print": _Func(0, None, _sprint_args),
    "println": _Func(0, None, lambda a: _sprint_args(a, line=True)),
    "printf": _Func(1, None, _printf),
    "html": _Func(0, None, _html),
    "js": _Func(0, None, _js),
    "urlquery": _Func(0, None, _urlquery),
}


# --- evaluator -------------------------------------------------------------------------------


def _lookup(value: object, path: tuple[str, ...], pos: int) -> object:
    for i, name in enumerate(path):
        if value is _NO_VALUE:
            return _NO_VALUE  # Go: a field of "no value" is again "no value"
        if isinstance(value, Mapping):
            value = value.get(name, _NO_VALUE)
        elif value is None:
            raise _Fail(f"nil pointer evaluating .{'.'.join(path[: i + 1])}", pos)
        else:
            raise _Fail(f"can't evaluate field {name} in type {_type_name(value)}", pos)
    return value


class _Exec:
    """One evaluation: the variable stack, the output and the work counters."""

    def __init__(self, root: Mapping[str, object]) -> None:
        self.vars: list[tuple[str, object]] = [("$", root)]
        self.out: list[str] = []
        self.size = 0
        self.steps = 0
        self.iterations = 0

    def emit(self, text: str) -> None:
        self.size += len(text)
        if self.size > MAX_OUTPUT_LEN:
            raise _Fail(f"output longer than {MAX_OUTPUT_LEN} characters")
        self.out.append(text)

    def tick(self) -> None:
        self.steps += 1
        if self.steps > MAX_STEPS:
            raise _Fail(f"evaluation takes more than {MAX_STEPS} steps")

    def walk(self, parts: tuple[_Part, ...], dot: object) -> None:
        for part in parts:
            if type(part) is str:
                self.emit(part)
            elif type(part) is _Action:
                value = self.pipe(part.pipe, dot)
                if not part.pipe.decl:
                    self.emit(_print_value(value))
            elif type(part) is _If:
                self.tick()
                mark = len(self.vars)
                value = self.pipe(part.pipe, dot)
                if _truth(value):
                    self.walk(part.then, value if part.with_ else dot)
                elif part.other is not None:
                    self.walk(part.other, dot)
                del self.vars[mark:]
            elif type(part) is _Range:
                self.range(part, dot)
            else:
                assert isinstance(part, _Jump)
                raise _Break if part.brk else _Continue

    def range(self, node: _Range, dot: object) -> None:
        mark = len(self.vars)
        value = self.pipe(node.pipe, dot)
        decl = node.pipe.decl
        pairs: Iterable[tuple[object, object]]
        if isinstance(value, list | tuple):
            pairs = enumerate(value)
        elif isinstance(value, Mapping):
            pairs = ((key, value[key]) for key in sorted(value, key=str))
        elif isinstance(value, int) and not isinstance(value, bool):
            if len(decl) > 1:
                raise _Fail(f"can't use {value} to iterate over more than one variable", node.pos)
            pairs = ((i, i) for i in range(value))
        elif value is _NO_VALUE:
            pairs = ()
        else:
            raise _Fail(f"range can't iterate over {_sprint(value)}", node.pos)
        inner = len(self.vars)
        ran = False
        for key, elem in pairs:
            ran = True
            self.iterations += 1
            if self.iterations > MAX_ITERATIONS:
                raise _Fail(f"more than {MAX_ITERATIONS} range iterations", node.pos)
            if node.pipe.assign:
                self.set_var(decl[0], key if len(decl) > 1 else elem, node.pos)
                if len(decl) > 1:
                    self.set_var(decl[1], elem, node.pos)
            elif decl:
                self.vars[inner - 1] = (decl[-1], elem)
                if len(decl) > 1:
                    self.vars[inner - 2] = (decl[0], key)
            try:
                self.walk(node.body, elem)
            except _Break:
                break
            except _Continue:
                pass
            finally:
                del self.vars[inner:]
        if not ran and node.other is not None:
            self.walk(node.other, dot)
        del self.vars[mark:]

    def set_var(self, name: str, value: object, pos: int) -> None:
        for i in range(len(self.vars) - 1, -1, -1):
            if self.vars[i][0] == name:
                self.vars[i] = (name, value)
                return
        raise _Fail(f"undefined variable: {name}", pos)

    def get_var(self, node: _Var) -> object:
        for name, value in reversed(self.vars):
            if name == node.name:
                return value
        raise _Fail(f"undefined variable: {node.name}", node.pos)

    def pipe(self, pipe: _Pipe, dot: object) -> object:
        value = self.eval(pipe.node, dot)
        if value is None:
            value = _NO_VALUE  # Go digs a nil out of its interface: an invalid value
        for name in pipe.decl:
            if pipe.assign:
                self.set_var(name, value, pipe.pos)
            else:
                self.vars.append((name, value))
        return value

    def eval(self, node: _Node, dot: object) -> object:
        self.tick()
        kind = type(node)
        if kind is _Literal:
            return node.value  # type: ignore[union-attr]
        if kind is _Field:
            assert isinstance(node, _Field)
            return _lookup(dot, node.path, node.pos) if node.path else dot
        if kind is _Var:
            assert isinstance(node, _Var)
            return _lookup(self.get_var(node), node.path, node.pos)
        if kind is _Chain:
            assert isinstance(node, _Chain)
            return _lookup(self.eval(node.node, dot), node.path, node.pos)
        if kind is _Pipe:
            assert isinstance(node, _Pipe)
            return self.pipe(node, dot)
        assert isinstance(node, _Call)
        func = _FUNCS[node.name]
        if func.impl is None:  # and/or: return the deciding argument itself, evaluating no further
            want = node.name == "or"
            value: object = _NO_VALUE
            for arg in node.args:
                value = self.eval(arg, dot)
                if _truth(value) == want:
                    return value
            return value
        args = [self.eval(arg, dot) for arg in node.args]
        try:
            result = func.impl([None if a is _NO_VALUE else a for a in args])
        except _Fail as exc:
            if exc.pos is not None:
                raise
            raise _Fail(f"error calling {node.name}: {exc.message}", node.pos) from None
        if isinstance(result, str) and len(result) > MAX_OUTPUT_LEN:
            raise _Fail(f"output longer than {MAX_OUTPUT_LEN} characters", node.pos)
        return result


# --- public API ------------------------------------------------------------------------------


@record(frozen=True)
class Condition:
    """A parsed condition; get it from `parse_condition` and evaluate it any number of times."""

    expr: str
    _parts: tuple[_Part, ...] = field(repr=False, compare=False)

    def render(self, data: object) -> str:
        """The output before it is trimmed and read as a bool, to explain a result."""
        root: Mapping[str, object] = data if isinstance(data, Mapping) else {}
        run = _Exec(root)
        try:
            run.walk(self._parts, root)
        except _Fail as exc:
            where = "" if exc.pos is None else f" at {exc.pos}"
            raise ConditionError(
                f"execute condition: {exc.message}{where}", expr=self.expr, position=exc.pos
            ) from None
        except RecursionError:
            raise ConditionError(
                "execute condition: data nested too deeply", expr=self.expr
            ) from None
        text = "".join(run.out)
        # A string cut by `slice` holds raw bytes; Go writes them, we show them as U+FFFD.
        return text if text.isascii() else _bytes(text).decode("utf-8", "replace")

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
