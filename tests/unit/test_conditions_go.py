"""Go `text/template` conditions, table by table: each expected value is what the reference gives.

The expected texts follow Go's documented `text/template` and `fmt` behaviour and the reference's
custom functions (floxy-spec.md §4.6). Where floxy knowingly differs (exact numbers, structural
`eq` where the reference panics) the case says so.
"""

from __future__ import annotations

import contextlib
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from floxy_core.conditions import MAX_ITERATIONS, MAX_STEPS, evaluate_condition, parse_condition
from floxy_core.errors import ConditionError

DATA: dict[str, object] = {
    "sku": "MUG-42",
    "s": "hello",
    "e": "é",
    "n": 5,
    "neg": -3,
    "f": 2.5,
    "zero": 0,
    "szero": "0",
    "empty": "",
    "list": [1, 2, 3],
    "same": [1, 2.0, 3],
    "strs": ["a", "b"],
    "elist": [],
    "emap": {},
    "m": {"b": 2, "a": 1},
    "null": None,
    "t": True,
    "nested": {"x": {"y": "deep"}},
    "items": [{"name": "a", "qty": 2}, {"name": "b", "qty": 0}],
    "dec": Decimal("0.1000000000000000000001"),
    "big": 12345678901234567890123,
    "html": "<a href='x'>&\"</a>",
}


def render(expr: str, data: object = DATA) -> str:
    return parse_condition(expr).render(data)


def execute_error(expr: str, data: object = DATA) -> str:
    condition = parse_condition(expr)
    with pytest.raises(ConditionError) as info:
        condition.render(data)
    assert str(info.value).startswith("execute condition: ")
    return str(info.value)


def parse_error(expr: str) -> str:
    with pytest.raises(ConditionError) as info:
        parse_condition(expr)
    assert str(info.value).startswith("parse condition: ")
    assert isinstance(info.value.position, int)
    return str(info.value)


def table(cases: str) -> list[tuple[str, str]]:
    """`expr => rendered` lines: `¶` stands for a newline, a final `⏎` marks an empty result."""
    rows = []
    for line in cases.strip().splitlines():
        expr, _, rendered = line.strip().partition(" =>")
        rendered = rendered.removeprefix(" ").replace("¶", "\n").removesuffix("⏎")
        rows.append((expr, rendered))
    return rows


# --- the issue's example, end to end through evaluate ------------------------------------------


@pytest.mark.parametrize(("sku", "expected"), [("MUG-42", True), ("CUP-1", False)])
def test_issue_example(sku: str, expected: bool) -> None:
    expr = '{{ if eq (slice .sku 0 4) "MUG-" }}true{{ else }}false{{ end }}'
    assert evaluate_condition(expr, {"sku": sku}) is expected


# --- actions -------------------------------------------------------------------------------------

CONTROL = table(
    """
    {{ if .missing }}a{{ else }}b{{ end }} => b
    {{ if .zero }}a{{ else if .n }}b{{ else }}c{{ end }} => b
    {{ if .zero }}a{{ else if .empty }}b{{ else }}c{{ end }} => c
    {{ if .szero }}yes{{ end }} => yes
    {{ if .elist }}a{{ else }}b{{ end }} => b
    {{ if .emap }}a{{ else }}b{{ end }} => b
    {{ if .null }}a{{ else }}b{{ end }} => b
    {{ if 0.0 }}a{{ else }}b{{ end }} => b
    {{ if .m }}a{{ else }}b{{ end }} => a
    {{ if and .n .s }}a{{ end }} => a
    {{ with .nested.x }}{{ .y }}{{ end }} => deep
    {{ with .missing }}a{{ else }}b{{ end }} => b
    {{ with .zero }}a{{ else with .s }}{{ . }}{{ end }} => hello
    {{ with $x := .n }}{{ $x }}{{ . }}{{ end }} => 55
    {{ range .list }}{{ . }}{{ end }} => 123
    {{ range $i, $v := .strs }}{{ $i }}={{ $v }};{{ end }} => 0=a;1=b;
    {{ range $k, $v := .m }}{{ $k }}{{ $v }}{{ end }} => a1b2
    {{ range .m }}{{ . }}{{ end }} => 12
    {{ range $v := .list }}{{ $v }}{{ end }} => 123
    {{ range .elist }}x{{ else }}empty{{ end }} => empty
    {{ range .missing }}x{{ else }}none{{ end }} => none
    {{ range .null }}x{{ else }}none{{ end }} => none
    {{ range .list }}{{ if eq . 2 }}{{ break }}{{ end }}{{ . }}{{ end }} => 1
    {{ range .list }}{{ if eq . 2 }}{{ continue }}{{ end }}{{ . }}{{ end }} => 13
    {{ range 3 }}{{ . }}{{ end }} => 012
    {{ range .items }}{{ if gt .qty 0 }}{{ .name }}{{ end }}{{ end }} => a
    {{ range $v := .elist }}{{ else }}{{ len $v }}{{ end }} => 0
    {{ range .list }}{{ $.n }}{{ end }} => 555
    {{ with .nested }}{{ $.sku }}{{ end }} => MUG-42
    {{ $n := 0 }}{{ range .list }}{{ $n = . }}{{ end }}{{ $n }} => 3
    {{ $x := 1 }}{{ if true }}{{ $x := 2 }}{{ $x }}{{ end }}{{ $x }} => 21
    {{ $x := 1 }}{{ if true }}{{ $x = 2 }}{{ end }}{{ $x }} => 2
    {{ $i := 9 }}{{ range $i, $v := .strs }}{{ end }}{{ $i }} => 9
    {{ range $i, $v := .strs }}{{ $v = "z" }}{{ $v }}{{ end }} => zz
    {{ $x := .nested }}{{ $x.x.y }} => deep
    {{ $x := .null }}{{ $x }} => <no value>
    {{ $x := .missing }}{{ $x.deeper }} => <no value>
    {{ (index .items 1).name }} => b
    {{ ($x := 7) }}{{ $x }} => 77
    {{ .sku }}{{/* a comment */}}! => MUG-42!
    {{- if true -}}   yes   {{- end -}} => yes
    a {{- if true }} b {{ end -}} c => a b c
    """
)


@pytest.mark.parametrize(("expr", "rendered"), CONTROL)
def test_actions_variables_and_scopes(expr: str, rendered: str) -> None:
    assert render(expr) == rendered


def test_dollar_is_the_data_printed_as_go_prints_a_map() -> None:
    data = {"b": [1, None, "x y"], "a": {"x": 2.0}, "c": True}
    assert render("{{ $ }}", data) == "map[a:map[x:2] b:[1 <nil> x y] c:true]"
    assert render("{{ with .a }}{{ $.c }}{{ end }}", data) == "true"


# --- literals ------------------------------------------------------------------------------------

LITERALS = table(
    r"""
    {{ 0x10 }} => 16
    {{ 0X1f }} => 31
    {{ -0x10 }} => -16
    {{ 0o17 }} => 15
    {{ 017 }} => 15
    {{ 0b11 }} => 3
    {{ 1_000 }} => 1000
    {{ 0x_ff }} => 255
    {{ 'a' }} => 97
    {{ '\n' }} => 10
    {{ '\'' }} => 39
    {{ '\u00e9' }} => 233
    {{ 'é' }} => 233
    {{ '\x41' }} => 65
    {{ 0x1p-2 }} => 0.25
    {{ 0x1.8p1 }} => 3
    {{ 1e3 }} => 1000
    {{ 1.5e3 }} => 1500
    {{ 1e21 }} => 1e+21
    {{ 123456789.0 }} => 1.23456789e+08
    {{ 100000.0 }} => 100000
    {{ 0.0001 }} => 0.0001
    {{ .5 }} => 0.5
    {{ 1_000.5 }} => 1000.5
    {{ -0.0 }} => -0
    {{ `raw\n` }} => raw\n
    {{ "\x41\101\u00e9" }} => AAé
    {{ print nil }} => <nil>
    {{ eq 0x10 16 }} => true
    {{ eq 'a' 97 }} => true
    {{ eq 1_000 1e3 }} => true
    {{ eq 0.1 .tenth }} => true
    """
)


@pytest.mark.parametrize(("expr", "rendered"), LITERALS)
def test_go_literals(expr: str, rendered: str) -> None:
    assert render(expr, {**DATA, "tenth": 0.1}) == rendered


# --- the reference's coercions -------------------------------------------------------------------

COERCIONS = table(
    """
    {{ eq "10" 10 }} => true
    {{ eq "10" 10.0 }} => true
    {{ eq " 1.5 " 1.5 }} => true
    {{ eq "abc" 0 }} => false
    {{ eq true 1 }} => true
    {{ eq true "true" }} => false
    {{ gt "abc" -1 }} => true
    {{ lt "abc" 1 }} => true
    {{ gt "10" 9 }} => true
    {{ eq .missing 0 }} => true
    {{ eq .missing "" }} => true
    {{ eq .missing false }} => true
    {{ eq .null nil }} => true
    {{ eq .missing 1 }} => false
    {{ ne .missing 0 }} => false
    {{ eq .m "map[a:1 b:2]" }} => true
    {{ eq .list .list }} => true
    {{ eq .list .same }} => true
    {{ eq .list .strs }} => false
    {{ eq .m .m }} => true
    {{ eq .m .emap }} => false
    {{ eq .elist .emap }} => false
    {{ eq (slice .list 0 2) (slice .same 0 2) }} => true
    {{ eq .dec 0.1 }} => false
    {{ gt .dec 0.1 }} => true
    {{ eq .big 12345678901234567890123 }} => true
    {{ gt .big 12345678901234567890122 }} => true
    {{ and 1 0 }} => 0
    {{ and .s .n }} => 5
    {{ and .null 1 }} => <no value>
    {{ or 0 "" }} =>⏎
    {{ or .missing "d" }} => d
    {{ or .zero .elist }} => []
    {{ or .zero .emap .s }} => hello
    {{ and false (index .elist 9) }} => false
    {{ or true (slice .s 9) }} => true
    {{ not .szero }} => false
    {{ not .elist }} => true
    {{ not .null }} => true
    {{ not 0.0 }} => true
    """
)


@pytest.mark.parametrize(("expr", "rendered"), COERCIONS)
def test_reference_coercions(expr: str, rendered: str) -> None:
    assert render(expr) == rendered


# --- len, index, slice ---------------------------------------------------------------------------

COLLECTIONS = table(
    """
    {{ len .e }} => 2
    {{ len "日本" }} => 6
    {{ len .list }} => 3
    {{ len .m }} => 2
    {{ len .elist }} => 0
    {{ index .list 1 }} => 2
    {{ index .m "b" }} => 2
    {{ index .s 1 }} => 101
    {{ index .m "zz" }} => <no value>
    {{ print (index .m "zz") }} => <nil>
    {{ index .items 0 "name" }} => a
    {{ index . "sku" }} => MUG-42
    {{ slice .s 1 3 }} => el
    {{ slice .s 2 }} => llo
    {{ slice .s }} => hello
    {{ slice .s 5 }} =>⏎
    {{ slice .s 0 0 }} =>⏎
    {{ slice .list 1 }} => [2 3]
    {{ slice .list 0 1 2 }} => [1]
    {{ slice .list 3 }} => []
    {{ len (slice .e 0 1) }} => 1
    {{ slice .e 0 1 }} => \ufffd
    """
)


@pytest.mark.parametrize(("expr", "rendered"), COLLECTIONS)
def test_len_index_slice(expr: str, rendered: str) -> None:
    assert render(expr) == rendered.replace("\\ufffd", "\ufffd")


COLLECTION_ERRORS = table(
    """
    {{ index .list 3 }} => error calling index: index out of range: 3 at 3
    {{ index .list -1 }} => error calling index: index out of range: -1 at 3
    {{ index .s 5 }} => error calling index: index out of range: 5 at 3
    {{ index .missing 0 }} => error calling index: index of untyped nil at 3
    {{ slice .s 1 6 }} => error calling slice: index out of range: 6 at 3
    {{ slice .s 3 1 }} => error calling slice: invalid slice index: 3 > 1 at 3
    {{ slice .list 0 2 1 }} => error calling slice: invalid slice index: 2 > 1 at 3
    {{ slice .s 0 1 2 }} => error calling slice: cannot 3-index slice a string at 3
    {{ slice .n 1 }} => error calling slice: can't slice item of type number at 3
    {{ slice .missing 1 }} => error calling slice: slice of untyped nil at 3
    {{ slice .s "1" }} => error calling slice: cannot index slice/array with string at 3
    {{ len .n }} => error calling len: len of number at 3
    """
)


@pytest.mark.parametrize(("expr", "message"), COLLECTION_ERRORS)
def test_len_index_slice_errors(expr: str, message: str) -> None:
    assert execute_error(expr) == f"execute condition: {message}"


# --- print, println ------------------------------------------------------------------------------

PRINT = table(
    """
    {{ print 1 2 }} => 1 2
    {{ print "a" "b" }} => ab
    {{ print "a" 1 "b" }} => a1b
    {{ print 1 "a" 2 }} => 1a2
    {{ print 1 2.5 true }} => 1 2.5 true
    {{ print .list .m }} => [1 2 3] map[a:1 b:2]
    {{ print .null .missing }} => <nil> <nil>
    {{ print .items }} => [map[name:a qty:2] map[name:b qty:0]]
    {{ print }} =>⏎
    {{ println 1 "a" }} => 1 a¶
    {{ println }} => ¶
    {{ .s | print "x" }} => xhello
    {{ print .dec .big }} => 0.1000000000000000000001 12345678901234567890123
    """
)


@pytest.mark.parametrize(("expr", "rendered"), PRINT)
def test_print_and_println(expr: str, rendered: str) -> None:
    assert render(expr) == rendered


# --- printf --------------------------------------------------------------------------------------

PRINTF = table(
    r"""
    {{ printf "%d" 5 }} => 5
    {{ printf "%d" .n }} => 5
    {{ printf "%5d|" 5 }} =>     5|
    {{ printf "%-5d|" 5 }} => 5    |
    {{ printf "%05d" -3 }} => -0003
    {{ printf "%+d" 5 }} => +5
    {{ printf "% d" 5 }} =>  5
    {{ printf "%x" 255 }} => ff
    {{ printf "%X" 255 }} => FF
    {{ printf "%#x" 255 }} => 0xff
    {{ printf "%#08x" 255 }} => 0x000000ff
    {{ printf "%x" -255 }} => -ff
    {{ printf "%o" 8 }} => 10
    {{ printf "%#o" 8 }} => 010
    {{ printf "%O" 8 }} => 0o10
    {{ printf "%b" 5 }} => 101
    {{ printf "%#b" 5 }} => 0b101
    {{ printf "%c" 65 }} => A
    {{ printf "%c" 'é' }} => é
    {{ printf "%c" -1 }} => �
    {{ printf "%q" 65 }} => 'A'
    {{ printf "%q" 0x1F600 }} => '😀'
    {{ printf "%+q" 0xe9 }} => '\u00e9'
    {{ printf "%U" 65 }} => U+0041
    {{ printf "%#U" 0x1F600 }} => U+1F600 '😀'
    {{ printf "%.3d" 5 }} => 005
    {{ printf "%8.3d|" 5 }} =>      005|
    {{ printf "%.0d|" 0 }} => |
    {{ printf "%v" 5 }} => 5
    {{ printf "%+v" 5 }} => 5
    {{ printf "%s" "hi" }} => hi
    {{ printf "%q" "hi\n" }} => "hi\n"
    {{ printf "%10s|" "hi" }} =>         hi|
    {{ printf "%-4s|" "hi" }} => hi  |
    {{ printf "%04s" "hi" }} => 00hi
    {{ printf "%.2s" "hello" }} => he
    {{ printf "%.1s" "éa" }} => é
    {{ printf "%x" "hi" }} => 6869
    {{ printf "% x" "hi" }} => 68 69
    {{ printf "%#x" "hi" }} => 0x6869
    {{ printf "% #X" "hi" }} => 0X68 0X69
    {{ printf "%q" "é" }} => "é"
    {{ printf "%+q" "é" }} => "\u00e9"
    {{ printf "%#q" "ab" }} => `ab`
    {{ printf "%#q" "a`b" }} => "a`b"
    {{ printf "%q" "\x01\x7f" }} => "\x01\x7f"
    {{ printf "%v" 2.5 }} => 2.5
    {{ printf "%v" .f }} => 2.5
    {{ printf "%f" 2.5 }} => 2.500000
    {{ printf "%F" 2.5 }} => 2.500000
    {{ printf "%.2f" 2.5 }} => 2.50
    {{ printf "%.1f" 0.35 }} => 0.3
    {{ printf "%.1f" 0.25 }} => 0.2
    {{ printf "%.0f" 0.5 }} => 0
    {{ printf "%.0f" 1.5 }} => 2
    {{ printf "%.2f" 0.006 }} => 0.01
    {{ printf "%.2f" 0.0001 }} => 0.00
    {{ printf "%e" 2.5 }} => 2.500000e+00
    {{ printf "%E" 123456.0 }} => 1.234560E+05
    {{ printf "%.2e" 1234.5678 }} => 1.23e+03
    {{ printf "%e" 0.0 }} => 0.000000e+00
    {{ printf "%e" 1e100 }} => 1.000000e+100
    {{ printf "%g" 2.5 }} => 2.5
    {{ printf "%g" 1e6 }} => 1e+06
    {{ printf "%g" 100000.0 }} => 100000
    {{ printf "%G" 1e-7 }} => 1E-07
    {{ printf "%.3g" 3.14159 }} => 3.14
    {{ printf "%.3g" 1.0 }} => 1
    {{ printf "%.2g" 100.0 }} => 1e+02
    {{ printf "%#g" 1.0 }} => 1.00000
    {{ printf "%#.3g" 1.0 }} => 1.00
    {{ printf "%#.0f" 1.0 }} => 1.
    {{ printf "%8.2f|" 3.14159 }} =>     3.14|
    {{ printf "%-8.2f|" 3.14159 }} => 3.14    |
    {{ printf "%08.2f" -3.14159 }} => -0003.14
    {{ printf "%+08.3f" 3.14159 }} => +003.142
    {{ printf "% .2f" 3.0 }} =>  3.00
    {{ printf "%+.1f" 2.25 }} => +2.2
    {{ printf "%6.2f%%" 99.5 }} =>  99.50%
    {{ printf "%x" 1.0 }} => 0x1p+00
    {{ printf "%x" 255.0 }} => 0x1.fep+07
    {{ printf "%X" -0.5 }} => -0X1P-01
    {{ printf "%.1x" 1.0 }} => 0x1.0p+00
    {{ printf "%b" 1.0 }} => 4503599627370496p-52
    {{ printf "%v" .dec }} => 0.1000000000000000000001
    {{ printf "%.3f" .dec }} => 0.100
    {{ printf "%d" .big }} => 12345678901234567890123
    {{ printf "%t" true }} => true
    {{ printf "%5t|" true }} =>  true|
    {{ printf "%v" .null }} => <nil>
    {{ printf "%v" .missing }} => <nil>
    {{ printf "%d" .null }} => %!d(<nil>)
    {{ printf "%s" .missing }} => %!s(<nil>)
    {{ printf "%d" "x" }} => %!d(string=x)
    {{ printf "%s" 5 }} => %!s(int=5)
    {{ printf "%5s" 5 }} => %!s(int=    5)
    {{ printf "%d" 2.5 }} => %!d(float64=2.5)
    {{ printf "%d" 1e3 }} => %!d(float64=1000)
    {{ printf "%f" 5 }} => %!f(int=5)
    {{ printf "%t" 1 }} => %!t(int=1)
    {{ printf "%z" 1 }} => %!z(int=1)
    {{ printf "%s" true }} => %!s(bool=true)
    {{ printf "%d" .list }} => [1 2 3]
    {{ printf "%d" .strs }} => [%!d(string=a) %!d(string=b)]
    {{ printf "%s" .list }} => [%!s(int=1) %!s(int=2) %!s(int=3)]
    {{ printf "%s" .strs }} => [a b]
    {{ printf "%q" .strs }} => ["a" "b"]
    {{ printf "%v" .m }} => map[a:1 b:2]
    {{ printf "%d" .m }} => map[%!d(string=a):1 %!d(string=b):2]
    {{ printf "%3v|" .list }} => [  1   2   3]|
    {{ printf "%5v|" (slice .items 0 0) }} => []|
    {{ printf "%v" (index .items 0) }} => map[name:a qty:2]
    {{ printf "%#v" .strs }} => []interface {}{"a", "b"}
    {{ printf "%#v" .m }} => map[string]interface {}{"a":1, "b":2}
    {{ printf "%#v" "a" }} => "a"
    {{ printf "%#v" .elist }} => []interface {}{}
    {{ printf "%v" (slice (print .null) 0 5) }} => <nil>
    {{ printf "%T" 1 }} => int
    {{ printf "%T" 1.5 }} => float64
    {{ printf "%T" "a" }} => string
    {{ printf "%T" true }} => bool
    {{ printf "%T" .list }} => []interface {}
    {{ printf "%T" .m }} => map[string]interface {}
    {{ printf "%T" .null }} => <nil>
    {{ printf "%p" 1 }} => %!p(int=1)
    {{ printf "%d" }} => %!d(MISSING)
    {{ printf "%d %d" 1 }} => 1 %!d(MISSING)
    {{ printf "x" 1 }} => x%!(EXTRA int=1)
    {{ printf "%d" 1 "a" .null }} => 1%!(EXTRA string=a, <nil>)
    {{ printf "%d" 1 .list }} => 1%!(EXTRA []interface {}=[1 2 3])
    {{ printf "%" }} => %!(NOVERB)
    {{ printf "%-" 1 }} => %!(NOVERB)%!(EXTRA int=1)
    {{ printf "100%%" }} => 100%
    {{ printf "%5%" }} => %
    {{ printf "%[2]d %[1]d" 1 2 }} => 2 1
    {{ printf "%[2]d %d" 1 2 3 }} => 2 3
    {{ printf "%[3]d" 1 }} => %!d(BADINDEX)
    {{ printf "%[x]d" 1 }} => %!d(BADINDEX)
    {{ printf "%*d" 5 1 }} =>     1
    {{ printf "%-*d|" 3 1 }} => 1  |
    {{ printf "%*d|" -3 1 }} => 1  |
    {{ printf "%.*f" 2 3.14159 }} => 3.14
    {{ printf "%*d" "x" 1 }} => %!(BADWIDTH)1
    {{ printf "%.*d" "x" 1 }} => %!(BADPREC)1
    {{ printf "%20000000d" 1 }} => %!(NOVERB)%!(EXTRA int=1)
    {{ printf "%s %s" "a" }} => a %!s(MISSING)
    {{ printf "%s-%v" .s .n }} => hello-5
    {{ .n | printf "%03d" }} => 005
    """
)


@pytest.mark.parametrize(("expr", "rendered"), PRINTF)
def test_printf_verbs(expr: str, rendered: str) -> None:
    assert render(expr) == rendered


# --- html, js, urlquery --------------------------------------------------------------------------

ESCAPERS = table(
    r"""
    {{ html .html }} => &lt;a href=&#39;x&#39;&gt;&amp;&#34;&lt;/a&gt;
    {{ html 1 2 }} => 1 2
    {{ html "a" "b" }} => ab
    {{ html .missing }} => &lt;nil&gt;
    {{ html "\x00" }} => �
    {{ js .html }} => \u003Ca href\u003D\'x\'\u003E\u0026\"\u003C/a\u003E
    {{ js "a=b\n\\" }} => a\u003Db\u000A\\
    {{ js "é\u2028" }} => é\u2028
    {{ urlquery "a b&c=d/é" }} => a+b%26c%3Dd%2F%C3%A9
    {{ urlquery "-_.~" }} => -_.~
    {{ urlquery "?x=1" 2 }} => %3Fx%3D12
    {{ .s | html }} => hello
    """
)


@pytest.mark.parametrize(("expr", "rendered"), ESCAPERS)
def test_html_js_urlquery(expr: str, rendered: str) -> None:
    assert render(expr) == rendered


# --- run-time errors -----------------------------------------------------------------------------

EXECUTE_ERRORS = table(
    """
    {{ range .s }}x{{ end }} => range can't iterate over hello at 3
    {{ range .t }}x{{ end }} => range can't iterate over true at 3
    {{ range $i, $v := 3 }}{{ end }} => can't use 3 to iterate over more than one variable at 3
    {{ printf 1 }} => error calling printf: format must be a string, got number at 3
    {{ $x := 1 }}{{ $x.a }} => can't evaluate field a in type number at 16
    {{ .null.a }} => nil pointer evaluating .null.a at 3
    {{ range .list }}{{ .a }}{{ end }} => can't evaluate field a in type number at 20
    {{ contains .n "1" }} => error calling contains: argument 1 must be a string, got number at 3
    """
)


@pytest.mark.parametrize(("expr", "message"), EXECUTE_ERRORS)
def test_execute_errors(expr: str, message: str) -> None:
    assert execute_error(expr) == f"execute condition: {message}"


def test_a_variable_of_the_other_branch_fails_at_run_time_only() -> None:
    # Go parses this (the parser keeps $z in scope), but the else branch cannot see it.
    assert render("{{ if true }}{{ $z := 1 }}{{ else }}{{ $z }}{{ end }}") == ""
    message = execute_error("{{ if false }}{{ $z := 1 }}{{ else }}{{ $z }}{{ end }}")
    assert message == "execute condition: undefined variable: $z at 40"


# --- parse errors (what `floxyctl validate` reports) ---------------------------------------------

PARSE_ERRORS = table(
    """
    {{ break }} => {{break}} outside {{range}} at 3
    {{ range .l }}{{ else }}{{ break }}{{ end }} => {{break}} outside {{range}} at 27
    {{ range .l }}{{ break 1 }}{{ end }} => unexpected "1" at 23
    {{ if true }}{{ else }}{{ else }}{{ end }} => expected end; found {{else}} at 26
    {{ if true }}x{{ end }}{{ end }} => unexpected {{end}} at 26
    {{ else }} => unexpected {{else}} at 3
    {{ if }}{{ end }} => missing value for if at 6
    {{ range .l }}x => unexpected EOF: {{range}} has no {{end}} at 3
    {{ $x = 1 }} => undefined variable "$x" at 3
    {{ $a, $b := .l }} => too many declarations in command at 5
    {{ range $a, $b, $c := .l }}{{ end }} => too many declarations in range at 15
    {{ if true }}{{ $y := 1 }}{{ end }}{{ $y }} => undefined variable "$y" at 38
    {{ $x := $x }} => undefined variable "$x" at 9
    {{ range .l }}{{ else if .x }}{{ end }} => unexpected "if" in input at 22
    {{ if .a }}{{ else with .x }}{{ end }} => unexpected "with" in input at 19
    {{ .a := 1 }} => unexpected ":=" in command at 6
    {{ 1i }} => complex numbers are not supported: "1i" at 3
    {{ 09 }} => illegal number syntax: "09" at 3
    {{ 1__0 }} => illegal number syntax: "1__0" at 3
    {{ 0x }} => illegal number syntax: "0x" at 3
    {{ 0x1.8 }} => illegal number syntax: "0x1.8" at 3
    {{ 'ab' }} => malformed character constant: 'ab' at 3
    {{ 'a }} => unterminated character constant at 3
    {{ call .f }} => "call" is not supported (JSON data holds no functions) at 3
    {{ slice .s 1 2 3 4 }} => wrong number of args for slice: want 1 to 4 got 5 at 3
    {{ printf }} => wrong number of args for printf: want at least 1 got 0 at 3
    {{ block "x" . }}{{ end }} => "block" is not supported (a condition is one template) at 3
    {{ define "x" }}{{ end }} => "define" is not supported (a condition is one template) at 3
    {{ template "x" }} => "template" is not supported (a condition is one template) at 3
    {{ printff "%d" 1 }} => function "printff" not defined at 3
    {{ .a 1 }} => can't give argument to non-function .a at 6
    {{ $.a 1 }} => can't give argument to non-function $ at 7
    {{ 1.a }} => bad number syntax: "1.a" at 3
    {{ : }} => expected := at 3
    """
)


@pytest.mark.parametrize(("expr", "message"), PARSE_ERRORS)
def test_parse_errors(expr: str, message: str) -> None:
    assert parse_error(expr) == f"parse condition: {message}"


# --- bounds --------------------------------------------------------------------------------------


def test_nested_ranges_stop_at_the_iteration_bound() -> None:
    expr = "{{ range .l }}{{ range $.l }}{{ range $.l }}{{ end }}{{ end }}{{ end }}"
    message = execute_error(expr, {"l": list(range(30))})
    assert f"more than {MAX_ITERATIONS} range iterations" in message
    assert render(expr, {"l": list(range(21))}) == ""  # 21**3 + 21**2 + 21 < 10,000


def test_range_over_a_huge_integer_stops_at_the_bound() -> None:
    assert "range iterations" in execute_error("{{ range 100000000000 }}{{ end }}")


def test_work_is_bounded_by_steps() -> None:
    expr = "{{ range 9000 }}{{ and 1 1 1 1 1 1 1 1 1 1 1 1 }}{{ end }}"
    assert f"more than {MAX_STEPS} steps" in execute_error(expr)


def test_a_doubling_string_stops_at_the_output_bound() -> None:
    expr = '{{ $s := "xxxxxxxx" }}{{ range 20 }}{{ $s = printf "%s%s" $s $s }}{{ end }}'
    assert "output longer than 65536 characters" in execute_error(expr)


def test_a_huge_printf_width_is_refused() -> None:
    assert "output longer than" in execute_error('{{ printf "%999999d" 1 }}')


def test_a_huge_exponent_is_not_expanded() -> None:
    assert "output longer than" in execute_error('{{ printf "%f" .x }}', {"x": Decimal("1e999999")})
    assert render("{{ .x }}", {"x": Decimal("1e400")}) == "1e+400"


def test_parsed_tree_is_cached_and_immutable() -> None:
    condition = parse_condition("{{ range .l }}{{ . }}{{ end }}")
    assert condition is parse_condition("{{ range .l }}{{ . }}{{ end }}")
    with pytest.raises(AttributeError):
        condition._parts = ()  # type: ignore[misc]


# --- properties: any template of the language, any JSON data, only our own errors ---------------

JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-300, 300)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.decimals(allow_nan=False, allow_infinity=False, places=None)
    | st.text(max_size=4),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=2), inner, max_size=3)
    ),
    max_leaves=6,
)
OPERANDS = [
    ".x",
    ".a",
    ".a.b",
    "$",
    "$v",
    ".",
    "1",
    "-2",
    "2.5",
    '"s"',
    "nil",
    "true",
    "0x1F",
    "'c'",
]
CALLS = [
    "len {0}", "index {0} {1}", "slice {0} {1}", "eq {0} {1}", "gt {0} {1}", "and {0} {1}",
    "or {0} {1}", "not {0}", "print {0} {1}", "println {0}", "html {0}", "js {0}", "urlquery {0}",
    'printf "%v|%d|%5.2f|%q|%x|%-4s|%#v|%T" {0} {1} {0} {1} {0} {1} {0} {1}', "contains {0} {1}",
]  # fmt: skip
PIPES = st.builds(
    lambda call, a, b: "(" + call.format(a, b) + ")",
    st.sampled_from(CALLS),
    st.sampled_from(OPERANDS),
    st.sampled_from(OPERANDS),
) | st.sampled_from(OPERANDS)
TEMPLATES = st.recursive(
    st.builds(lambda p: "{{ " + p + " }}", PIPES) | st.sampled_from(["t", " ", "{{/* c */}}"]),
    lambda inner: (
        st.builds(
            lambda kind, p, body, other: (
                f"{{{{ {kind} {p} }}}}{body}{{{{ else }}}}{other}{{{{ end }}}}"
                if kind != "range $i, $w :="
                else f"{{{{ range $i, $w := {p} }}}}{body}{{{{ break }}}}{{{{ end }}}}"
            ),
            st.sampled_from(["if", "with", "range", "range $i, $w :="]),
            PIPES,
            inner,
            inner,
        )
        | st.builds(lambda a, b: a + b, inner, inner)
    ),
    max_leaves=6,
)


@settings(max_examples=200, deadline=None)
@given(TEMPLATES, JSON_VALUES, JSON_VALUES)
def test_any_template_fails_only_with_a_condition_error(body: str, x: object, a: object) -> None:
    with contextlib.suppress(ConditionError):  # `{{ nil }}` does not parse, and data may not fit
        parse_condition("{{ $v := .x }}" + body).render({"x": x, "a": a})


@settings(max_examples=200, deadline=None)
@given(
    st.text(alphabet="%#0+- .*[]1239dsvqxXeEfFgGtTcUbOopz", max_size=14),
    st.lists(JSON_VALUES, max_size=4),
)
def test_printf_takes_any_format_and_arguments(fmt: str, args: list[object]) -> None:
    expr = "{{ printf .f" + "".join(f" (index .a {i})" for i in range(len(args))) + " }}"
    with contextlib.suppress(ConditionError):  # only a huge width or precision may refuse
        parse_condition(expr).render({"f": fmt, "a": args})
