"""Caps and values the stores cannot keep, refused where they enter (issue 13, DECISIONS.md).

`validate` reports them at file:line:col; the builder refuses them for definitions made in code;
the engine bounds every computed wait so that no due time leaves the calendar.
"""

from __future__ import annotations

import random
from textwrap import dedent

import pytest

from floxy_core.builder import Builder, Options
from floxy_core.durations import MAX_DURATION_MS, MAX_RETRIES, RETRY_AFTER_CAP_MS
from floxy_core.engine.retry import backoff_ms
from floxy_core.errors import DefinitionError, SpecError, ValidationError
from floxy_core.model import RetryStrategy, StepDefinition, StepType
from floxy_core.spec.loader import load_document

HEAD = """\
handlers:
  - {name: a, exec: "echo '{}'"}
flows:
"""


def errors_of(text: str) -> list[SpecError]:
    with pytest.raises(ValidationError) as info:
        load_document(HEAD + dedent(text), "wf.yaml")
    return info.value.errors


def only(text: str) -> str:
    errors = errors_of(text)
    assert len(errors) == 1, "\n".join(map(str, errors))
    return str(errors[0])


def test_max_retries_past_the_cap_is_refused_at_its_line() -> None:
    message = only("  - name: f\n    steps:\n      - {name: a, max_retries: 99999999999}\n")
    assert message.startswith("wf.yaml:6:")
    assert "max_retries" in message and "at most 1000" in message
    message = only("  - name: f\n    max_retries: 1001\n    steps: [a]\n")
    assert message.startswith("wf.yaml:5:") and "at most 1000" in message
    load_document(
        HEAD + f"  - name: f\n    steps:\n      - {{name: a, max_retries: {MAX_RETRIES}}}\n"
    )


@pytest.mark.parametrize(
    "value", ["99999999999999", "'99999999h'", "'721h'", "'43201m'", str(MAX_DURATION_MS + 1)]
)
@pytest.mark.parametrize("key", ["delay", "retry_delay", "retry_max_delay", "timeout"])
def test_durations_past_30_days_are_refused(key: str, value: str) -> None:
    message = only(f"  - name: f\n    steps:\n      - {{name: a, {key}: {value}}}\n")
    assert message.startswith("wf.yaml:6:"), message
    assert f"steps[0].{key}" in message and "at most 30 days" in message


def test_thirty_days_is_accepted_and_handler_and_compensation_durations_are_checked() -> None:
    load_document(
        HEAD + "  - name: f\n    steps:\n      - {name: a, delay: 720h, timeout: 2592000000}\n"
    )
    text = dedent(
        """\
        handlers:
          - {name: a, exec: "http://localhost:1/x", timeout: 9999h}
        flows:
          - name: f
            steps:
              - name: s
                handler: a
                on_failure: {handler: a, retry_delay: 9999h}
                metadata: {timeout: 9999h}
        """
    )
    with pytest.raises(ValidationError) as info:
        load_document(text, "wf.yaml")
    paths = [e.path for e in info.value.errors]
    assert paths == ["handlers[0].timeout", "flows[0].steps[0].on_failure.retry_delay"]


def test_version_must_fit_the_int_column() -> None:
    message = only("  - name: f\n    version: 2147483648\n    steps: [a]\n")
    assert "at most 2147483647" in message


@pytest.mark.parametrize(
    ("text", "where", "what"),
    [
        ('  - name: "f\\0"\n    steps: [a]\n', "wf.yaml:4:9", "NUL"),
        (
            '  - name: f\n    steps:\n      - {name: a, metadata: {note: "x\\0y"}}\n',
            "wf.yaml:6:",
            "NUL",
        ),
        (
            '  - name: f\n    steps:\n      - {name: a, metadata: {"k\\0": 1}}\n',
            "wf.yaml:6:",
            "NUL",
        ),
        ("  - name: f\n    steps:\n      - {name: a, metadata: {x: .inf}}\n", "wf.yaml:6:", "inf"),
        ("  - name: f\n    steps:\n      - {name: a, metadata: {x: 1e400}}\n", "wf.yaml:6:", "inf"),
    ],
)
def test_values_postgresql_cannot_keep_are_refused_at_file_line_col(
    text: str, where: str, what: str
) -> None:
    messages = [str(e) for e in errors_of(text)]
    assert any(m.startswith(where) and what in m for m in messages), messages


def test_the_builder_refuses_what_the_schema_caps() -> None:
    with pytest.raises(DefinitionError, match=r"max_retries must be 0\.\.1000"):
        Builder("x").step("a", options=Options(max_retries=MAX_RETRIES + 1)).build()
    with pytest.raises(DefinitionError, match=r"delay must be 0\.\.2592000000 ms"):
        Builder("x").step("a", options=Options(delay_ms=MAX_DURATION_MS + 1)).build()
    with pytest.raises(DefinitionError, match=r"version must be 1\.\.2147483647"):
        Builder("x", version=2**31).step("a").build()


def test_back_off_never_passes_thirty_days() -> None:
    step = StepDefinition(
        name="a",
        type=StepType.TASK,
        handler="a",
        max_retries=MAX_RETRIES,
        retry_delay_ms=1000,
        retry_strategy=RetryStrategy.EXPONENTIAL,
    )
    rng = random.Random(1)
    assert backoff_ms(step, 41, rng) == MAX_DURATION_MS
    assert backoff_ms(step, MAX_RETRIES, rng) == MAX_DURATION_MS
    assert RETRY_AFTER_CAP_MS == 3_600_000
