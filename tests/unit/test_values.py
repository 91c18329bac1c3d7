"""values.py: what a storable value is and how JSON travels (DECISIONS.md, data byte for byte)."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest

from floxy_core import values
from floxy_core.errors import UnstorableValue


@pytest.mark.parametrize(
    ("text", "expected", "written"),
    [
        ("1e400", Decimal("1e400"), "1E+400"),
        ("-1e400", Decimal("-1e400"), "-1E+400"),
        ("1e-400", Decimal("1e-400"), "1E-400"),
        ("0.1000000000000000000001", Decimal("0.1000000000000000000001"), None),
        ("9007199254740993", 9007199254740993, None),
        ("12345678901234567890123456789", 12345678901234567890123456789, None),
        ("0.1", 0.1, None),
        ("2.5", 2.5, None),
        ("1.50", 1.5, "1.5"),
    ],
)
def test_numbers_are_exact(text: str, expected: Any, written: str | None) -> None:
    value = values.loads(text)
    assert value == expected and type(value) is type(expected)
    out = values.dumps(value)
    assert out == (written or text)
    assert Decimal(json.loads(out, parse_float=Decimal, parse_int=Decimal)) == Decimal(text)


def test_very_long_integers_stay_exact() -> None:
    digits = "7" * 5000  # past Python's 4,300-digit int/str limit
    value = values.loads(f"[{digits}]")
    assert values.dumps(value) == f"[{digits}]"


@pytest.mark.parametrize(
    "text",
    [
        "NaN",
        "Infinity",
        "-Infinity",
        '{"a": NaN}',
        "1e131072",
        "1e-16384",
        "1e99999999999999999999",
    ],
)
def test_numbers_json_or_postgresql_cannot_hold_are_refused(text: str) -> None:
    with pytest.raises((ValueError, UnstorableValue)):
        values.loads(text)


def test_nul_is_refused_with_the_json_path_in_strings_and_keys() -> None:
    with pytest.raises(UnstorableValue) as info:
        values.loads('{"items": [{"name": "a\\u0000b"}]}')
    assert info.value.path == "$.items[0].name"
    assert "NUL" in str(info.value)
    with pytest.raises(UnstorableValue) as info:
        values.loads('{"a b": {"k\\u0000": 1}}', lenient=True)
    assert info.value.path == '$["a b"]["k\\u0000"]'


def test_lone_surrogates_are_replaced_in_handler_output_and_refused_in_input() -> None:
    assert values.loads('["\\ud800", "\\ud83d\\ude80", "x\\udfff"]', lenient=True) == [
        "\ufffd",
        "\U0001f680",
        "x\ufffd",
    ]
    assert values.loads('{"\\udc00": 1}', lenient=True) == {"\ufffd": 1}
    with pytest.raises(UnstorableValue, match=r"^\$\[0\]: string contains a lone surrogate"):
        values.loads('["\\ud800"]')


def test_invalid_utf8_is_replaced_in_handler_output_and_refused_otherwise() -> None:
    assert values.loads(b'"caf\xe9"', lenient=True) == "caf\ufffd"
    with pytest.raises(UnicodeDecodeError):
        values.loads(b'"caf\xe9"')


def test_nesting_is_bounded() -> None:
    ok = "[" * values.MAX_DEPTH + "]" * values.MAX_DEPTH
    assert values.loads(ok) is not None
    for depth in (values.MAX_DEPTH + 1, 5000):
        with pytest.raises(UnstorableValue, match="nested deeper than 512"):
            values.loads("[" * depth + "]" * depth)


def test_storable_checks_python_values() -> None:
    plain = {"a": [1, 2.5, "x", None, True]}
    assert values.storable(plain) is plain  # nothing to change: the same object
    assert values.storable({"s": "\ud800"}) == {"s": "\ufffd"}
    for bad, path in [
        ({"a": [float("nan")]}, "$.a[0]"),
        ({"a": float("inf")}, "$.a"),
        ({"a": {"b": object()}}, "$.a.b"),
        ({"a": Decimal("1e200000")}, "$.a"),
        ([{"x": "\x00"}], "$[0].x"),
    ]:
        with pytest.raises(UnstorableValue) as info:
            values.storable(bad)
        assert info.value.path == path


def test_dumps_never_writes_nan_and_indents() -> None:
    with pytest.raises(ValueError):
        values.dumps(float("nan"))
    with pytest.raises(ValueError):
        values.dumps(Decimal("Infinity"))
    assert values.dumps({"x": Decimal("1E+400")}, indent=2) == '{\n  "x": 1E+400\n}'
    assert values.dumps({"s": "é"}) == '{"s":"é"}'


def test_text_makes_diagnostics_storable() -> None:
    assert values.text("a\x00b\ud800") == "a\ufffdb\ufffd"
    assert values.text("plain") == "plain"
