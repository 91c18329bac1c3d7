"""Condition expressions: the Go template subset of the reference engine, rules and bounds."""

from __future__ import annotations

import pytest

from floxy_core.conditions import Condition, evaluate_condition, parse_condition
from floxy_core.errors import ConditionError


def render(expr: str, data: object = None) -> str:
    return parse_condition(expr).render(data)


def parse_error(expr: str) -> ConditionError:
    with pytest.raises(ConditionError) as info:
        parse_condition(expr)
    assert str(info.value).startswith("parse condition: ")
    assert info.value.expr == expr
    return info.value


def execute_error(expr: str, data: object) -> ConditionError:
    condition = parse_condition(expr)  # must parse: the failure is at run time
    with pytest.raises(ConditionError) as info:
        condition.evaluate(data)
    assert str(info.value).startswith("execute condition: ")
    return info.value


# --- output reading ----------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["1", "t", "T", "TRUE", "true", "True", "  true\n"])
def test_true_outputs(text: str) -> None:
    assert evaluate_condition(text, {}) is True


@pytest.mark.parametrize("text", ["0", "f", "F", "FALSE", "false", "False", "\tfalse "])
def test_false_outputs(text: str) -> None:
    assert evaluate_condition(text, {}) is False


@pytest.mark.parametrize(
    ("expr", "shown"),
    [
        ("{{ .missing }}", "<no value>"),
        ("{{ .n }}", "<no value>"),  # Go prints a null field as "no value" too
        ("{{ print .n }}", "<nil>"),
        ("yes", "yes"),
        ("{{ 2 }}", "2"),
        ("", ""),
    ],
)
def test_invalid_output(expr: str, shown: str) -> None:
    with pytest.raises(ConditionError) as info:
        evaluate_condition(expr, {"n": None})
    assert str(info.value) == f'invalid condition output: "{shown}"'


def test_render_returns_untrimmed_text() -> None:
    assert render(" {{ true }}\n") == " true\n"


# --- eq / ne coercions -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        # nil against anything: equal only to a numeric zero
        ("{{ eq .missing nil }}", True),
        ("{{ eq .missing 0 }}", True),
        ('{{ eq .missing "" }}', True),
        ("{{ eq .missing false }}", True),
        ('{{ eq .missing " 0.0 " }}', True),
        ("{{ eq .null 0 }}", True),
        ("{{ eq 0 .missing }}", True),
        ("{{ eq .missing 1 }}", False),
        ('{{ eq .missing "abc" }}', False),
        ("{{ eq .missing .list }}", False),
        # both numeric: exact decimal equality
        ('{{ eq "10" 10.0 }}', True),
        ('{{ eq " 3.5 " 3.5 }}', True),
        ('{{ eq "-2" -2 }}', True),
        ("{{ eq true 1 }}", True),
        ("{{ eq false 0 }}", True),
        ('{{ eq "" 0 }}', True),
        ("{{ eq .int .float }}", True),
        ("{{ eq .tenth 0.1 }}", True),
        ('{{ eq .tenth "0.10" }}', True),
        ("{{ eq .sum 0.3 }}", False),
        ("{{ eq 1e3 1000 }}", True),
        ("{{ eq .5 0.5 }}", True),
        # exactly one numeric: never equal
        ('{{ eq "abc" 0 }}', False),
        ('{{ eq true "true" }}', False),
        # neither numeric: compare as Go prints them
        ('{{ eq "abc" "abc" }}', True),
        ('{{ eq "abc" "ABC" }}', False),
        ("{{ eq .list .same_list }}", True),
        ('{{ eq .map "map[k:v]" }}', True),
        ("{{ ne 1 2 }}", True),
        ("{{ ne .missing 0 }}", False),
        ('{{ ne "10" 10 }}', False),
    ],
)
def test_equality(expr: str, expected: bool) -> None:
    data = {
        "null": None,
        "int": 2,
        "float": 2.0,
        "tenth": 0.1,
        "sum": 0.1 + 0.2,
        "list": [1, "a"],
        "same_list": [1, "a"],
        "map": {"k": "v"},
    }
    assert evaluate_condition(expr, data) is expected


# --- ordering ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("{{ gt .amount 100 }}", True),
        ("{{ gt .exact 100 }}", False),
        ("{{ ge .exact 100 }}", True),
        ("{{ lt .amount 100 }}", False),
        ("{{ le .exact 100.0 }}", True),
        ('{{ gt "10" 9 }}', True),  # numerically, not as strings
        ('{{ gt "abc" -1 }}', True),  # non-numeric counts as 0
        ('{{ lt "abc" 1 }}', True),
        ("{{ gt .missing -1 }}", True),
        ("{{ gt true 0 }}", True),
        ("{{ lt 0.3 .sum }}", True),  # 0.1 + 0.2 is 0.30000000000000004, compared exactly
        ("{{ lt .neg -2.5 }}", True),
        ("{{ ge .list 0 }}", True),
    ],
)
def test_ordering(expr: str, expected: bool) -> None:
    data = {"amount": 150, "exact": 100, "sum": 0.1 + 0.2, "neg": -3, "list": [1]}
    assert evaluate_condition(expr, data) is expected


# --- and / or / not ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expr", "rendered"),
    [
        ("{{ and 1 0 2 }}", "0"),  # first falsy argument
        ('{{ and 1 "x" }}', "x"),  # or the last one
        ('{{ or 0 "" "x" 0 }}', "x"),  # first truthy argument
        ("{{ or 0 false }}", "false"),  # or the last one
        ("{{ and .missing true }}", "<no value>"),
        ('{{ and (eq .status "ok") (not .blocked) }}', "true"),
        ("{{ not .empty_list }}", "true"),
        ("{{ not .empty_map }}", "true"),
        ('{{ not "" }}', "true"),
        ("{{ not 0.0 }}", "true"),
        ("{{ not .missing }}", "true"),
        ('{{ not "0" }}', "false"),  # a non-empty string is true, whatever it says
        ("{{ and false (index .empty_list 5) }}", "false"),  # short-circuit: no error
        ("{{ or true (len .status | eq 0) }}", "true"),
    ],
)
def test_and_or_not(expr: str, rendered: str) -> None:
    data = {"status": "ok", "blocked": False, "empty_list": [], "empty_map": {}}
    assert render(expr, data) == rendered


# --- string functions, len, index ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ('{{ contains .s "ell" }}', True),
        ('{{ contains .s "xyz" }}', False),
        ('{{ hasPrefix .s "he" }}', True),
        ('{{ hasPrefix .s "lo" }}', False),
        ('{{ hasSuffix .s "lo" }}', True),
        ('{{ hasSuffix .s "he" }}', False),
    ],
)
def test_string_functions(expr: str, expected: bool) -> None:
    assert evaluate_condition(expr, {"s": "hello"}) is expected


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ('{{ contains .n "1" }}', "argument 1 must be a string, got number"),
        ("{{ hasPrefix .s 1 }}", "argument 2 must be a string, got number"),
        ('{{ hasSuffix .missing "a" }}', "argument 1 must be a string, got nil"),
    ],
)
def test_string_functions_reject_non_strings(expr: str, message: str) -> None:
    error = execute_error(expr, {"n": 12, "s": "abc"})
    assert message in str(error)
    assert error.position == 3


@pytest.mark.parametrize(
    ("expr", "rendered"),
    [
        ("{{ len .s }}", "3"),
        ("{{ len .accented }}", "2"),  # bytes, as Go counts
        ("{{ len .list }}", "3"),
        ("{{ len .map }}", "1"),
        ("{{ len . }}", "5"),
    ],
)
def test_len(expr: str, rendered: str) -> None:
    data = {"s": "abc", "accented": "é", "list": [1, 2, 3], "map": {"k": 1}, "n": 5}
    assert render(expr, data) == rendered


@pytest.mark.parametrize(
    ("expr", "message"),
    [("{{ len .n }}", "len of number"), ("{{ len .missing }}", "len of nil")],
)
def test_len_errors(expr: str, message: str) -> None:
    assert message in str(execute_error(expr, {"n": 5}))


@pytest.mark.parametrize(
    ("expr", "rendered"),
    [
        ('{{ index .m "a" }}', "1"),
        ('{{ index .m "nested" 1 "k" }}', "deep"),
        ("{{ index .l 0 }}", "x"),
        ('{{ index . "with-dash" }}', "ok"),
        ('{{ index .m "absent" }}', "<no value>"),
        ("{{ index .l }}", "[x y]"),
    ],
)
def test_index(expr: str, rendered: str) -> None:
    data = {"m": {"a": 1, "nested": [None, {"k": "deep"}]}, "l": ["x", "y"], "with-dash": "ok"}
    assert render(expr, data) == rendered


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("{{ index .l 2 }}", "index out of range: 2"),
        ("{{ index .l -1 }}", "index out of range: -1"),
        ('{{ index .l "0" }}', "cannot index list with string"),
        ("{{ index .m 0 }}", "map key must be a string, got number"),
        ('{{ index .missing "a" }}', "index of untyped nil"),
        ("{{ index .n 0 }}", "can't index item of type number"),
    ],
)
def test_index_errors(expr: str, message: str) -> None:
    assert message in str(execute_error(expr, {"l": ["x", "y"], "m": {}, "n": 1}))


# --- fields and data -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expr", "rendered"),
    [
        ("{{ .a.b.c }}", "true"),
        ("{{ .a.missing.c }}", "<no value>"),
        ("{{ .nothing.at.all }}", "<no value>"),
        ("{{ .b }} {{ .n }} {{ .f }} {{ .s }} {{ .z }}", "true 3 2.5 x <no value>"),
        ("{{ .whole }} {{ 2.0 }} {{ 1e6 }} {{ 0.00001 }} {{ -0.5 }}", "7 2 1e+06 1e-05 -0.5"),
        ("{{ .obj }}", "map[a:1 b:[x <nil> false]]"),
    ],
)
def test_field_paths_and_printing(expr: str, rendered: str) -> None:
    data = {
        "a": {"b": {"c": True}},
        "b": True,
        "n": 3,
        "f": 2.5,
        "s": "x",
        "z": None,
        "whole": 7.0,
        "obj": {"b": ["x", None, False], "a": 1},
    }
    assert render(expr, data) == rendered


def test_bool_data_is_not_printed_as_a_number() -> None:
    assert render("{{ .b }}", {"b": True}) == "true"
    assert render("{{ .b }}", {"b": 1}) == "1"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"a": None}, "nil pointer evaluating .a.b"),
        ({"a": "text"}, "can't evaluate field b in type string"),
    ],
)
def test_field_through_non_object_fails(data: object, message: str) -> None:
    assert message in str(execute_error("{{ .a.b }}", data))


@pytest.mark.parametrize("data", [None, [1, 2], "text", 5, True])
def test_non_object_data_is_empty(data: object) -> None:
    assert evaluate_condition("{{ eq .a nil }}", data) is True
    assert render("{{ len . }}", data) == "0"


# --- template text -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expr", "rendered"),
    [
        ('{{ "tr" }}{{ "ue" }}', "true"),
        ('T {{- "R" -}} UE', "TRUE"),
        ("a {{-1}}", "a -1"),  # no space after the dash: a negative number, not a trim marker
        ("a {{- 1}}", "a1"),
        ("{{/* why */}}true", "true"),
        ("x {{- /* why */ -}} y", "xy"),
        ("{{ .x | gt 5 }}", "true"),  # the piped value is the last argument: gt 5 .x
        ("{{ .l | len | eq 2 }}", "true"),
        ("{{ true | not | not }}", "true"),
        ('{{ eq "a\\tb\\u00e9\\xc3\\xa9" .s }}', "true"),
        ("{{ eq `raw\\n` .raw }}", "true"),
        ('{{ "}}" }}', "}}"),
    ],
)
def test_template_text_trim_and_literals(expr: str, rendered: str) -> None:
    assert render(expr, {"x": 3, "l": [1, 2], "s": "a\tbéé", "raw": "raw\\n"}) == rendered


# --- parse errors ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("{{ true", "unclosed action (missing }}) at 0"),
        ("{{ eq 1 1 ) }}", 'unexpected ")" at 10'),
        ("{{ foo 1 }}", 'function "foo" not defined at 3'),
        ("{{ eq 1 2 3 }}", "wrong number of args for eq: want 2 got 3 at 3"),
        ("{{ not }}", "wrong number of args for not: want 1 got 0 at 3"),
        ("{{ and }}", "wrong number of args for and: want at least 1 got 0 at 3"),
        ("{{ if .a }}yes", "unexpected EOF: {{if}} has no {{end}} at 3"),
        ("{{ end }}", "unexpected {{end}} at 3"),
        ('{{ template "t" }}', '"template" is not supported'),
        ('{{ define "t" }}x{{ end }}', '"define" is not supported'),
        ("{{ $x }}", 'undefined variable "$x" at 3'),
        ("{{ }}", "missing value for command at 3"),
        ('{{ "abc }}', "unterminated quoted string at 3"),
        ("{{ `abc }}", "unterminated raw quoted string at 3"),
        ('{{ "\\q" }}', "invalid escape \\q"),
        ("{{ 1 2 }}", "can't give argument to non-function 1 at 5"),
        ("{{ (eq 1 1 }}", "unclosed left paren at 3"),
        ("{{ nil }}", "nil is not a command at 3"),
        ("{{ .a | .b }}", "non executable command in pipeline stage 2 at 8"),
        ("{{ 0x1G }}", 'bad number syntax: "0x1G" at 3'),
        ("{{ # }}", 'unexpected "#" at 3'),
        ("{{/* never closed }}", "unclosed comment"),
        ('{{ "a".b }}', 'unexpected ".b" after term'),
    ],
)
def test_parse_errors(expr: str, message: str) -> None:
    error = parse_error(expr)
    assert message in str(error)
    assert isinstance(error.position, int)


def test_parse_error_position_matches_message() -> None:
    error = parse_error("{{ eq .a 1 ) }}")
    assert str(error) == 'parse condition: unexpected ")" at 11'
    assert error.position == 11


def test_non_string_expression_is_rejected() -> None:
    with pytest.raises(ConditionError, match="expected a string"):
        parse_condition(42)  # type: ignore[arg-type]


# --- bounds ------------------------------------------------------------------------------------


def test_expression_length_bound() -> None:
    assert evaluate_condition(" " * 4092 + "true", {}) is True
    assert "expression too long (4097 characters, limit 4096)" in str(
        parse_error(" " * 4093 + "true")
    )


def test_nesting_bound_for_parentheses() -> None:
    def nested(levels: int) -> str:
        return "{{ " + "not (" * levels + "false" + ")" * levels + " }}"

    assert evaluate_condition(nested(32), {}) is False  # 32 nots of false plus no outer call
    assert "nesting deeper than 32" in str(parse_error(nested(33)))


def test_nesting_bound_for_pipelines() -> None:
    assert render("{{ true" + " | not" * 32 + " }}") == "true"
    assert "nesting deeper than 32" in str(parse_error("{{ true" + " | not" * 33 + " }}"))


def test_string_literal_bound() -> None:
    assert render('{{ "' + "a" * 1024 + '" }}') == "a" * 1024
    error = parse_error('{{ "' + "a" * 1025 + '" }}')
    assert str(error) == "parse condition: string literal longer than 1024 characters at 3"


def test_token_bound() -> None:
    def many(ones: int) -> str:  # {{ and 1 1 ... }}: ones + 3 tokens
        return "{{ and" + " 1" * ones + " }}"

    assert evaluate_condition(many(253), {}) is True
    assert "too many tokens (limit 256)" in str(parse_error(many(254)))


def test_deeply_nested_data_is_an_error_not_a_crash() -> None:
    data: dict[str, object] = {"a": 0}
    for _ in range(5000):
        data = {"a": data}
    assert "data nested too deeply" in str(execute_error("{{ eq . .a }}", data))


def test_output_bound() -> None:
    error = execute_error("{{ .s }}", {"s": "x" * 70_000})
    assert "output longer than 65536 characters" in str(error)


# --- API ---------------------------------------------------------------------------------------


def test_parse_is_cached_and_condition_is_immutable() -> None:
    condition = parse_condition("{{ eq .a 1 }}")
    assert condition is parse_condition("{{ eq .a 1 }}")
    assert isinstance(condition, Condition)
    assert condition.expr == "{{ eq .a 1 }}"
    with pytest.raises(AttributeError):  # a frozen record
        condition.expr = "true"  # type: ignore[misc]


def test_execute_error_carries_expression_and_position() -> None:
    error = execute_error("{{ and true (len .n) }}", {"n": 1})
    assert error.expr == "{{ and true (len .n) }}"
    assert error.position == 13
    assert str(error) == "execute condition: error calling len: len of number at 13"
