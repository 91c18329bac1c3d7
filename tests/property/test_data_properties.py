"""Data properties on both stores (issues 13 and 14).

1. Poison never loops: whatever JSON-ish value a handler returns (NUL characters, lone
   surrogates, NaN, infinities, numbers past `numeric`, non-JSON objects), every attempt ends,
   the handler is called at most `max_retries + 1` times, the instance ends, and the
   `--output json` document (`instance_report` through `render.print_json`'s encoder) is valid
   strict JSON. A value `values.storable` accepts completes the flow; one it refuses fails it.
2. Numbers and strings survive a round trip through real bash steps exactly: a number keeps its
   value (never a float's rounding, never Infinity), a string its text, except that a lone
   surrogate becomes U+FFFD (escaped surrogate pairs join into one character) and invalid
   UTF-8 bytes become U+FFFD — checked against an oracle written independently of values.py.

Example counts are small: the machine is loaded and each PostgreSQL example costs a few
transactions and bash processes.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from floxy_core import values
from floxy_core.builder import Builder, Options
from floxy_core.errors import UnstorableValue
from floxy_core.handlers.bash import BashHandler
from floxy_core.ports import Store
from floxy_core.report import instance_report
from floxy_core.status import InstanceStatus
from floxy_core.storage.memory import MemoryStore
from tests.contract.harness import harness
from tests.pgcluster import Cluster

TERMINAL = {InstanceStatus.COMPLETED, InstanceStatus.FAILED}


@pytest.fixture(scope="module", params=["memory", "postgres"])
def store(request: pytest.FixtureRequest) -> Iterator[Store]:
    """One store per module: examples start new instances, they do not need new databases."""
    if request.param == "memory":
        yield MemoryStore(seed=3)
        return
    from floxy_core.storage.postgres import PostgresStore

    cluster: Cluster = request.getfixturevalue("pg_cluster")
    dsn = cluster.create_database()
    pg = PostgresStore(dsn, seed=3, max_size=2)
    try:
        yield pg
    finally:
        pg.close()
        cluster.drop_database(dsn)


def strict(text: str) -> Any:
    def refuse(name: str) -> Any:
        raise AssertionError(f"{name} is not JSON")

    text.encode("utf-8")  # no lone surrogate
    return json.loads(text, parse_constant=refuse, parse_float=Decimal)


# -- 1. poison never loops ----------------------------------------------------------------------

_SURROGATES = st.sampled_from(["\ud800", "\udfff", "\ud83d", "\ude80"])
_poison_text = st.text(st.characters() | _SURROGATES | st.just("\x00"), max_size=6)
_leaf = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.sampled_from(
        [Decimal("1E+400"), Decimal("-1E-400"), Decimal("1E+200000"), Decimal("NaN"), 10**4000]
    )
    | _poison_text
)
poison = st.recursive(
    _leaf,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_poison_text, inner, max_size=3),
    max_leaves=8,
)


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(result=poison, max_retries=st.integers(min_value=0, max_value=2))
def test_any_handler_result_ends_within_max_retries_and_reports_as_json(
    store: Store, result: Any, max_retries: int
) -> None:
    h = harness(["emit", "next"], store=store)
    h.handlers.add("emit", lambda ctx, data: result)
    h.handlers.add("next", lambda ctx, data: data)
    definition = (
        Builder("poison", version=max_retries + 1)
        .step("emit", options=Options(max_retries=max_retries))
        .step("next", options=Options(max_retries=0))
        .build()
    )
    instance_id = h.run(definition)
    instance = store.get_instance(instance_id)
    assert instance.status in TERMINAL
    calls = h.handlers.order().count("emit")
    assert 1 <= calls <= max_retries + 1
    try:
        values.storable(result)
    except UnstorableValue:
        assert instance.status is InstanceStatus.FAILED
        assert calls == max_retries + 1
    else:
        assert instance.status is InstanceStatus.COMPLETED
    report = instance_report(
        instance, store.get_steps(instance_id), store.get_events(instance_id), []
    )
    strict(values.dumps(report, indent=2))


# -- 2. exact round trip through bash ------------------------------------------------------------


@st.composite
def number_texts(draw: st.DrawFn) -> str:
    """JSON number literals: long integers, fractions, exponents far past float range."""
    sign = draw(st.sampled_from(["", "-"]))
    whole = draw(st.from_regex(r"0|[1-9][0-9]{0,40}", fullmatch=True))
    fraction = draw(st.one_of(st.just(""), st.from_regex(r"\.[0-9]{1,30}", fullmatch=True)))
    exponent = draw(
        st.one_of(
            st.just(""),
            st.builds(
                lambda e, s, n: f"{e}{s}{n}",
                st.sampled_from("eE"),
                st.sampled_from(["", "+", "-"]),
                st.integers(min_value=0, max_value=2000),
            ),
        )
    )
    return f"{sign}{whole}{fraction}{exponent}"


_text = st.text(st.characters(exclude_characters=["\x00"]) | _SURROGATES, max_size=8)
"""Strings with lone surrogates and pairs written as two code points: they are written escaped."""


def expected_text(s: str) -> str:
    """The oracle: adjacent high+low surrogates join into one character; others are U+FFFD."""
    out: list[str] = []
    i = 0
    while i < len(s):
        c = ord(s[i])
        nxt = ord(s[i + 1]) if i + 1 < len(s) else 0
        if 0xD800 <= c <= 0xDBFF and 0xDC00 <= nxt <= 0xDFFF:
            out.append(chr(0x10000 + ((c - 0xD800) << 10) + (nxt - 0xDC00)))
            i += 2
            continue
        out.append("\ufffd" if 0xD800 <= c <= 0xDFFF else s[i])
        i += 1
    return "".join(out)


def is_storable_number(text: str) -> bool:
    d = Decimal(text)
    exponent = d.as_tuple().exponent
    assert isinstance(exponent, int)
    return not (d and d.adjusted() >= 131072) and -exponent <= 16383


@settings(
    max_examples=10,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    numbers=st.lists(number_texts(), min_size=1, max_size=4),
    strings=st.lists(_text, min_size=1, max_size=4),
    bad_bytes=st.lists(
        st.sampled_from([b"\xff", b"\xfe", b"\xc3", b"\xe9", b"\x80", b"\xed\xa0\x80", b"ok"]),
        max_size=3,
    ).map(b"".join),
)
def test_numbers_and_strings_survive_bash_steps_exactly(
    store: Store,
    tmp_path_factory: pytest.TempPathFactory,
    numbers: list[str],
    strings: list[str],
    bad_bytes: bytes,
) -> None:
    numbers = [n for n in numbers if is_storable_number(n)] or ["0"]
    body = ",".join(
        json.dumps(s, ensure_ascii=i % 2 == 0 or _has_surrogate(s)) for i, s in enumerate(strings)
    )
    document = ("{" + f'"n":[{",".join(numbers)}],"s":[{body}],"b":"').encode() + bad_bytes + b'"}'
    source = tmp_path_factory.mktemp("out") / "output.json"
    source.write_bytes(document)
    h = harness(["emit", "echo"], store=store)
    h.handlers.add("emit", BashHandler("emit", f"cat '{source}'"))
    h.handlers.add("echo", BashHandler("echo", 'printf %s "$INPUT"'))
    definition = (
        Builder("roundtrip")
        .step("emit", options=Options(max_retries=0))
        .step("echo", options=Options(max_retries=0))
        .build()
    )
    instance_id = h.run(definition)
    instance = store.get_instance(instance_id)
    assert instance.status is InstanceStatus.COMPLETED, store.get_steps(instance_id)
    out = instance.output
    assert len(out["n"]) == len(numbers)
    for got, text in zip(out["n"], numbers, strict=True):
        assert not (isinstance(got, float) and not math.isfinite(got))
        assert Decimal(str(got)) == Decimal(text), (got, text)
    assert out["s"] == [expected_text(s) for s in strings]
    assert out["b"] == bad_bytes.decode("utf-8", "replace")


def _has_surrogate(s: str) -> bool:
    return any(0xD800 <= ord(c) <= 0xDFFF for c in s)
