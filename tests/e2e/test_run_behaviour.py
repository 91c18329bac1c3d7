"""`floxyctl run` end to end: data flow, retries, conditions, parallel/fork, the bash handler.

Every test runs the real console script as a subprocess with bash handlers; handlers append one
line per call to the ledger file ($LEDGER) so the tests see every call and its order.
"""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path

import pytest

# --------------------------------------------------------------------------------------------
# Data flow


def test_chaining_passes_each_output_to_the_next_step(run_flow, ledger):
    r = run_flow(
        """
handlers:
  - name: first
    exec: |
      echo "first $INPUT" >> "$LEDGER"
      echo "key $FLOXY_IDEMPOTENCY_KEY" >> "$LEDGER"
      jq -c '{n: (.n + 1), trail: ["first"]}' <<<"$INPUT"
  - name: second
    exec: |
      echo "second $INPUT" >> "$LEDGER"
      echo "key $FLOXY_IDEMPOTENCY_KEY" >> "$LEDGER"
      jq -c '{n: (.n * 10), trail: (.trail + ["second"])}' <<<"$INPUT"
  - name: third
    exec: |
      echo "third $INPUT" >> "$LEDGER"
      jq -c '. + {done: true}' <<<"$INPUT"
flows:
  - name: chain
    steps: [first, second, third]
""",
        input={"n": 1, "junk": "dropped"},
    )
    assert r.code == 0, r.describe()
    assert r.status == "completed"
    assert r.output == {"n": 20, "trail": ["first", "second"], "done": True}
    assert r.step("first")["input"] == {"n": 1, "junk": "dropped"}
    # input of a step = predecessor's output, unchanged (no merge with earlier data)
    assert r.step("second")["input"] == {"n": 2, "trail": ["first"]}
    assert r.step("third")["input"] == {"n": 20, "trail": ["first", "second"]}
    assert [ln.split()[0] for ln in ledger.calls_except("key")] == ["first", "second", "third"]
    keys = [ln.split()[1] for ln in ledger.calls("key")]
    assert len(keys) == 2 and keys[0] != keys[1], keys  # each step row has its own key


def test_string_shorthand_step_uses_the_handler_of_the_same_name(run_flow, ledger):
    r = run_flow(
        """
handlers:
  - name: hello
    exec: |
      echo "hello $FLOXY_STEP_NAME" >> "$LEDGER"
      echo '{"greeting": "hi"}'
  - name: other
    exec: |
      echo "other" >> "$LEDGER"
      echo '{"wrong": true}'
flows:
  - name: short
    steps:
      - hello
"""
    )
    assert r.code == 0, r.describe()
    assert r.doc["input"] == {}  # no -i and stdin not a terminal but empty: {}
    assert r.output == {"greeting": "hi"}
    assert [s["name"] for s in r.doc["steps"]] == ["hello"]
    assert r.step("hello")["type"] == "task"
    assert ledger.lines() == ["hello hello"]


# --------------------------------------------------------------------------------------------
# Retries

FLAKY = """
handlers:
  - name: flaky
    exec: |
      echo "flaky retry=$FLOXY_RETRY_COUNT key=$FLOXY_IDEMPOTENCY_KEY" >> "$LEDGER"
      if [ "$FLOXY_RETRY_COUNT" -lt 2 ]; then echo "not yet $FLOXY_RETRY_COUNT" >&2; exit 1; fi
      echo '{"ok": true}'
flows:
  - name: retry
    steps:
      - name: flaky
        retry_delay: 20ms
"""


def test_retry_then_success_sees_retry_count_0_1_2(run_flow, ledger):
    r = run_flow(FLAKY)
    assert r.code == 0, r.describe()
    assert r.status == "completed"
    assert r.output == {"ok": True}
    lines = ledger.lines()
    assert [ln.split()[1] for ln in lines] == ["retry=0", "retry=1", "retry=2"]
    # the idempotency key stays the same across retries
    keys = {ln.split()[2] for ln in lines}
    assert len(keys) == 1 and keys != {"key="}
    assert len(r.events("step_retry")) == 2


def test_exhausted_retries_make_exactly_n_plus_one_calls(run_flow, ledger):
    r = run_flow(
        """
handlers:
  - name: broken
    exec: |
      echo "broken retry=$FLOXY_RETRY_COUNT" >> "$LEDGER"
      echo "backend down" >&2
      exit 3
  - name: after
    exec: |
      echo "after" >> "$LEDGER"
      echo '{}'
flows:
  - name: exhaust
    steps:
      - name: broken
        max_retries: 2
        retry_delay: 10ms
      - after
"""
    )
    assert r.code == 1, r.describe()
    assert r.status == "failed"
    assert ledger.lines() == ["broken retry=0", "broken retry=1", "broken retry=2"]
    assert "backend down" in r.doc["error"]
    assert "backend down" in (r.step("broken")["error"] or "")
    assert not r.has_step("after")


def test_default_max_retries_is_three_retries_four_calls(run_flow, ledger):
    r = run_flow(
        """
handlers:
  - name: broken
    exec: |
      echo "broken $FLOXY_RETRY_COUNT" >> "$LEDGER"
      exit 1
flows:
  - name: exhaust
    steps:
      - name: broken
        retry_delay: 5ms
"""
    )
    assert r.code == 1, r.describe()
    assert ledger.lines() == ["broken 0", "broken 1", "broken 2", "broken 3"]


def test_no_idempotent_step_is_called_exactly_once(run_flow, ledger):
    r = run_flow(
        """
handlers:
  - name: charge
    exec: |
      echo "charge $FLOXY_RETRY_COUNT" >> "$LEDGER"
      echo "card declined" >&2
      exit 1
flows:
  - name: once
    steps:
      - name: charge
        no_idempotent: true
        max_retries: 5
        retry_delay: 5ms
"""
    )
    assert r.code == 1, r.describe()
    assert r.status == "failed"
    assert ledger.lines() == ["charge 0"]
    assert "card declined" in r.doc["error"]


def test_retry_delay_is_waited_between_attempts(run_flow, ledger):
    r = run_flow(
        """
handlers:
  - name: broken
    exec: |
      echo "broken $(date +%s%N)" >> "$LEDGER"
      exit 1
flows:
  - name: spaced
    steps:
      - name: broken
        max_retries: 2
        retry_delay: 150ms
        retry_strategy: linear
"""
    )
    assert r.code == 1, r.describe()
    stamps = [int(ln.split()[1]) / 1e9 for ln in ledger.lines()]
    assert len(stamps) == 3
    # linear: 150 ms before the first retry, 300 ms before the second
    assert stamps[1] - stamps[0] >= 0.14, stamps
    assert stamps[2] - stamps[1] >= 0.29, stamps


# --------------------------------------------------------------------------------------------
# Conditions

BRANCHING = """
handlers:
  - name: big
    exec: |
      echo "big $INPUT" >> "$LEDGER"
      jq -c '{path: "big", amount}' <<<"$INPUT"
  - name: small
    exec: |
      echo "small $INPUT" >> "$LEDGER"
      jq -c '{path: "small", amount}' <<<"$INPUT"
flows:
  - name: branch
    steps:
      - type: condition
        name: is_big
        expr: "{{ gt .amount 100 }}"
        else:
          - small
      - big
"""


@pytest.mark.parametrize(
    ("amount", "taken", "not_taken"), [(150, "big", "small"), (100, "small", "big")]
)
def test_condition_takes_one_branch(run_flow, ledger, amount, taken, not_taken):
    r = run_flow(BRANCHING, input={"amount": amount})
    assert r.code == 0, r.describe()
    assert r.output == {"path": taken, "amount": amount}
    # both branches receive the condition's input
    assert r.step(taken)["input"] == {"amount": amount}
    assert not r.has_step(not_taken)
    assert [ln.split()[0] for ln in ledger.lines()] == [taken]


def test_condition_false_without_else_ends_with_the_condition_input(run_flow, ledger):
    r = run_flow(
        """
handlers:
  - name: never
    exec: |
      echo "never" >> "$LEDGER"
      echo '{}'
flows:
  - name: stop
    steps:
      - {type: condition, name: gate, expr: "{{ eq .go true }}"}
      - never
""",
        input={"go": False, "x": 1},
    )
    assert r.code == 0, r.describe()
    assert r.output == {"go": False, "x": 1}
    assert ledger.lines() == []


CONDITION_CASES = [
    # (expression, input, expected)
    ('{{ eq .s "abc" }}', {"s": "abc"}, True),
    ('{{ eq .s "abc" }}', {"s": "abd"}, False),
    ("{{ eq .n 10 }}", {"n": 10}, True),
    ("{{ eq .n 10 }}", {"n": 10.0}, True),
    ('{{ eq .n "10" }}', {"n": 10}, True),
    ("{{ eq .n 10 }}", {"n": 11}, False),
    ("{{ ne .n 10 }}", {"n": 11}, True),
    ("{{ lt .n 10 }}", {"n": 9.5}, True),
    ("{{ ge .n 10 }}", {"n": 9.5}, False),
    ("{{ eq .missing 0 }}", {}, True),
    ('{{ eq .missing "x" }}', {}, False),
    ("{{ gt .missing 0 }}", {"other": 5}, False),
    ('{{ eq .a.b "deep" }}', {"a": {"b": "deep"}}, True),
    ('{{ eq .a.b "deep" }}', {"a": {"b": "shallow"}}, False),
    ("{{ gt .a.b.c 1 }}", {"a": {"b": {"c": 2}}}, True),
    ('{{ and (eq .x 1) (eq .y "y") }}', {"x": 1, "y": "y"}, True),
    ('{{ and (eq .x 1) (eq .y "y") }}', {"x": 1, "y": "n"}, False),
    ("{{ or (eq .x 1) (eq .x 2) }}", {"x": 2}, True),
    ("{{ or (eq .x 1) (eq .x 2) }}", {"x": 3}, False),
    ("{{ not (eq .x 1) }}", {"x": 1}, False),
    ("{{ not (eq .x 1) }}", {"x": 0}, True),
    ('{{ contains .email "@example.com" }}', {"email": "ann@example.com"}, True),
    ('{{ contains .email "@example.com" }}', {"email": "ann@example.org"}, False),
    ('{{ and (contains .tag "vip") (not (eq .blocked true)) }}', {"tag": "vip-gold"}, True),
    # the whole Go template language (issue 14)
    ('{{ if eq (slice .sku 0 4) "MUG-" }}true{{ else }}false{{ end }}', {"sku": "MUG-42"}, True),
    ('{{ if eq (slice .sku 0 4) "MUG-" }}true{{ else }}false{{ end }}', {"sku": "CUP-1"}, False),
    ("{{ $n := len .items }}{{ gt $n 2 }}", {"items": [1, 2, 3]}, True),
    (
        '{{ $vip := false }}{{ range .tags }}{{ if eq . "vip" }}{{ $vip = true }}{{ end }}'
        "{{ end }}{{ $vip }}",
        {"tags": ["a", "vip"]},
        True,
    ),
    (
        '{{ $vip := false }}{{ range .tags }}{{ if eq . "vip" }}{{ $vip = true }}{{ end }}'
        "{{ end }}{{ $vip }}",
        {"tags": ["a"]},
        False,
    ),
    (
        '{{ eq (printf "%05.1f|%d-%s" .price .n .s) "012.5|7-x" }}',
        {"price": 12.5, "n": 7, "s": "x"},
        True,
    ),
    ("{{ gt .n 0x10 }}", {"n": 17}, True),
    ('{{ eq (urlquery .q) "a+b%26c" }}', {"q": "a b&c"}, True),
]


_FIELD = re.compile(r"(?<![\w.])\.([A-Za-z_]\w*)")


def _isolate(i: int, expr: str, data: dict) -> tuple[str, dict]:
    """Give case i its own top-level field names (`.x` -> `.c<i>_x`) so cases share one input."""
    return _FIELD.sub(rf".c{i}_\1", expr), {f"c{i}_{k}": v for k, v in data.items()}


def _mark(name: str) -> dict:
    return {"name": name, "handler": "mark"}


def test_condition_language(run_flow):
    """All cases in two runs (one per expected result); the step reached names the first wrong case.

    Expected-true cases are chained: each condition's true path goes on to the next one, its else
    ends at `wrong_<i>`; the end is `all_true`. Expected-false cases are nested in else lists: each
    condition's true path ends at `wrong_<i>`; the innermost else is `all_false`.
    """
    cases = [(i, *_isolate(i, e, d), want) for i, (e, d, want) in enumerate(CONDITION_CASES)]
    true_cases = [c for c in cases if c[3]]
    false_cases = [c for c in cases if not c[3]]
    handlers = [{"name": "mark", "exec": 'printf \'"%s"\\n\' "$FLOXY_STEP_NAME"\n'}]

    true_steps: list = []
    for i, expr, _, _ in true_cases:
        true_steps.append(
            {"type": "condition", "name": f"c{i}", "expr": expr, "else": [_mark(f"wrong_{i}")]}
        )
    true_steps.append(_mark("all_true"))

    false_steps: list = [_mark("all_false")]
    for i, expr, _, _ in reversed(false_cases):
        false_steps = [
            {"type": "condition", "name": f"c{i}", "expr": expr, "else": false_steps},
            _mark(f"wrong_{i}"),
        ]

    for steps, cases_, end in (
        (true_steps, true_cases, "all_true"),
        (false_steps, false_cases, "all_false"),
    ):
        data: dict = {}
        for _, _, d, _ in cases_:
            data.update(d)
        doc = {"handlers": handlers, "flows": [{"name": "cond", "steps": steps}]}
        r = run_flow(json.dumps(doc, indent=1), input=data, yaml_name=f"{end}.yaml")
        assert r.code == 0, r.describe()
        if r.output != end:
            i = int(str(r.output).removeprefix("wrong_"))
            expr, d, want = CONDITION_CASES[i]
            pytest.fail(f"{expr} with input {d} should be {want}; the run ended at {r.output}")
        # every condition of the chain was evaluated
        assert {f"c{i}" for i, *_ in cases_} <= {s["name"] for s in r.doc["steps"]}


def test_condition_error_fails_the_run(run_flow):
    r = run_flow(
        """
handlers:
  - name: yes
    exec: |
      echo '"yes"'
flows:
  - name: cond
    steps:
      - {type: condition, name: c, expr: "{{ .word }}"}
      - yes
""",
        input={"word": "maybe"},
    )
    assert r.code == 1, r.describe()
    assert r.status == "failed"
    assert "maybe" in r.doc["error"]


# --------------------------------------------------------------------------------------------
# Parallel and fork

PARALLEL_HANDLERS = """
handlers:
  - name: prep
    exec: |
      echo "prep" >> "$LEDGER"
      jq -c '. + {prepared: true}' <<<"$INPUT"
  - name: ta
    exec: |
      echo "ta $INPUT" >> "$LEDGER"
      jq -c '{a: .base}' <<<"$INPUT"
  - name: tb
    exec: |
      sleep 0.1
      echo "tb $INPUT" >> "$LEDGER"
      jq -c '{b: (.base * 2)}' <<<"$INPUT"
  - name: after
    exec: |
      echo "after $INPUT" >> "$LEDGER"
      jq -c '{sum: (.outputs.ta.a + .outputs.tb.b)}' <<<"$INPUT"
"""


def test_parallel_tasks_get_the_parallel_input_and_the_join_output_has_the_reference_shape(
    run_flow, ledger
):
    r = run_flow(
        PARALLEL_HANDLERS
        + """
flows:
  - name: par
    steps:
      - prep
      - type: parallel
        name: both
        tasks: [ta, tb]
      - after
""",
        input={"base": 3},
    )
    assert r.code == 0, r.describe()
    assert r.output == {"sum": 9}
    assert r.step("ta")["input"] == {"base": 3, "prepared": True}
    assert r.step("tb")["input"] == {"base": 3, "prepared": True}
    join_out = r.step("after")["input"]
    assert set(join_out) == {"completed", "failed", "strategy", "outputs", "status"}
    assert sorted(join_out["completed"]) == ["ta", "tb"]
    assert join_out["failed"] == []
    assert join_out["strategy"] == "all"
    assert join_out["status"] == "success"
    assert join_out["outputs"] == {"ta": {"a": 3}, "tb": {"b": 6}}
    assert r.step("both_join")["type"] == "join"
    assert len(ledger.calls("after")) == 1


def test_a_flow_may_start_with_a_parallel(run_flow, ledger):
    r = run_flow(
        PARALLEL_HANDLERS
        + """
flows:
  - name: par_first
    steps:
      - type: parallel
        name: both
        tasks: [ta, tb]
      - after
""",
        input={"base": 5},
    )
    assert r.code == 0, r.describe()
    assert r.output == {"sum": 15}
    assert r.step("ta")["input"] == {"base": 5}
    assert r.step("tb")["input"] == {"base": 5}
    assert len(ledger.calls("after")) == 1


FORK = """
handlers:
  - name: a1
    exec: |
      echo "a1" >> "$LEDGER"
      jq -c '{a1: .v}' <<<"$INPUT"
  - name: a2
    exec: |
      echo "a2 $INPUT" >> "$LEDGER"
      jq -c '{a2: .a1}' <<<"$INPUT"
  - name: fast
    exec: |
      echo "fast" >> "$LEDGER"
      echo '{"who": "fast"}'
  - name: slow
    exec: |
      sleep 0.4
      echo "slow" >> "$LEDGER"
      echo '{"who": "slow"}'
  - name: broken
    exec: |
      echo "broken" >> "$LEDGER"
      echo "nope" >&2
      exit 1
  - name: after
    exec: |
      echo "after $INPUT" >> "$LEDGER"
      jq -c '{completed, failed, strategy, keys: (.outputs | keys)}' <<<"$INPUT"
"""


def test_fork_all_waits_for_every_multi_step_branch(run_flow, ledger):
    r = run_flow(
        FORK
        + """
flows:
  - name: fork_all
    steps:
      - type: fork
        name: f
        branches:
          - [a1, a2]
          - [slow]
        join: {name: f_done, strategy: all}
      - after
""",
        input={"v": 7},
    )
    assert r.code == 0, r.describe()
    assert r.output["strategy"] == "all"
    assert sorted(r.output["completed"]) == ["a2", "slow"]
    assert r.output["keys"] == ["a2", "slow"]
    assert r.step("a2")["input"] == {"a1": 7}
    assert r.step("f_done")["type"] == "join"
    assert ledger.calls("after") and len(ledger.calls("after")) == 1
    # the step after the join runs after every branch finished
    names = [ln.split()[0] for ln in ledger.lines()]
    assert names.index("after") > max(names.index("a2"), names.index("slow"))


def test_fork_any_continues_after_the_first_successful_branch(run_flow, ledger):
    r = run_flow(
        FORK
        + """
flows:
  - name: fork_any
    steps:
      - type: fork
        name: f
        branches:
          - [fast]
          - [slow]
        join: {strategy: any}
      - after
"""
    )
    assert r.code == 0, r.describe()
    assert r.output["strategy"] == "any"
    assert r.output["completed"] == ["fast"]
    assert len(ledger.calls("after")) == 1
    names = [ln.split()[0] for ln in ledger.lines()]
    if "slow" in names:  # the slower branch may finish, but only after the join went on
        assert names.index("after") < names.index("slow"), names


def test_fork_any_skips_a_failed_branch_and_waits_for_a_successful_one(run_flow, ledger):
    r = run_flow(
        FORK
        + """
flows:
  - name: fork_any_fail
    steps:
      - type: fork
        name: f
        branches:
          - [{name: broken, max_retries: 0}]
          - [slow]
        join: {strategy: any}
      - after
"""
    )
    assert r.code == 0, r.describe()
    assert r.output["completed"] == ["slow"]
    assert r.output["failed"] == ["broken"]
    assert r.step("broken")["status"] == "failed"
    assert len(ledger.calls("after")) == 1


def test_fork_any_fails_when_every_branch_failed(run_flow, ledger):
    r = run_flow(
        FORK
        + """
flows:
  - name: fork_any_all_fail
    steps:
      - type: fork
        name: f
        branches:
          - [{name: broken, max_retries: 0}]
          - [{name: broken2, handler: broken, max_retries: 0}]
        join: {strategy: any}
      - after
"""
    )
    assert r.code == 1, r.describe()
    assert r.status == "failed"
    assert ledger.calls("after") == []


# --------------------------------------------------------------------------------------------
# The bash handler: environment, output rules, script files


def test_bash_environment_exports_input_fields_and_floxy_variables(run_flow):
    r = run_flow(
        """
handlers:
  - name: env
    exec: |
      jq -n -c \\
        --arg input "$INPUT" --arg order "$ORDER_ID" --arg amount "$AMOUNT" \\
        --arg nested "$NESTED" --arg flag "$FLAG" --arg mixed "${MIXEDCASE-unset}" \\
        --arg inst "$FLOXY_INSTANCE_ID" --arg step "$FLOXY_STEP_NAME" \\
        --arg key "$FLOXY_IDEMPOTENCY_KEY" --arg retry "$FLOXY_RETRY_COUNT" \\
        --arg debug "${FLOXY_DEBUG-unset}" --arg comp "${FLOXY_COMPENSATION-unset}" \\
        --arg bad "${BAD_NAME-unset}" \\
        '$ARGS.named'
flows:
  - name: env_flow
    steps:
      - {name: look, handler: env}
""",
        input={
            "order_id": "A-1",
            "amount": 12.5,
            "nested": {"k": [1, 2]},
            "flag": True,
            "mixedCase": "m",
            "bad-name": "x",
        },
    )
    assert r.code == 0, r.describe()
    env = r.output
    assert json.loads(env["input"]) == {
        "order_id": "A-1",
        "amount": 12.5,
        "nested": {"k": [1, 2]},
        "flag": True,
        "mixedCase": "m",
        "bad-name": "x",
    }
    assert env["order"] == "A-1"
    assert env["amount"] == "12.5"
    assert env["nested"] == '{"k":[1,2]}'  # compact JSON
    assert env["flag"] == "true"
    assert env["mixed"] == "m"
    assert env["inst"] == str(r.doc["instance_id"])
    assert env["step"] == "look"
    assert len(env["key"]) >= 8
    assert env["retry"] == "0"
    assert env["debug"] in {"true", "false"}
    assert env["comp"] == "unset"
    assert env["bad"] == "unset"


def test_null_input_field_is_exported_as_compact_json(run_flow):
    """DECISIONS: strings as is, other values as compact JSON; JSON null is `null`."""
    r = run_flow(
        """
handlers:
  - name: env
    exec: |
      jq -n -c --arg nothing "${NOTHING-unset}" --arg zero "$ZERO" --arg no "$NO" '$ARGS.named'
flows:
  - name: env_flow
    steps: [env]
""",
        input={"nothing": None, "zero": 0, "no": False},
    )
    assert r.code == 0, r.describe()
    assert r.output == {"nothing": "null", "zero": "0", "no": "false"}


def test_input_fields_cannot_override_protected_variables(run_flow, tmp_path):
    marker = tmp_path / "bash_env_ran"
    evil = tmp_path / "evil.sh"
    evil.write_text(f"touch {marker}\n")
    r = run_flow(
        """
handlers:
  - name: env
    exec: |
      jq -n -c --arg path "$PATH" --arg step "$FLOXY_STEP_NAME" \\
        --arg ld "${LD_PRELOAD-unset}" --arg bash_env "${BASH_ENV-unset}" \\
        --arg input "$INPUT" --arg ledger "$LEDGER" --arg home "$HOME" \\
        '$ARGS.named'
flows:
  - name: env_flow
    steps:
      - {name: look, handler: env}
""",
        input={
            "path": "/nonexistent-lower",
            "PATH": "/nonexistent-upper",
            "FLOXY_STEP_NAME": "hijacked",
            "floxy_step_name": "hijacked-lower",
            "ld_preload": "/tmp/evil.so",
            "bash_env": str(evil),
            "input": "not the input",
            "ledger": "/nonexistent/ledger",
            "home": "/nonexistent-home",
        },
        env={"HOME": str(tmp_path)},
    )
    assert r.code == 0, r.describe()
    env = r.output
    assert "/nonexistent" not in env["path"]
    assert env["step"] == "look"
    assert env["ld"] == "unset"
    assert env["bash_env"] == "unset"
    assert json.loads(env["input"])["input"] == "not the input"
    assert env["ledger"].endswith("ledger.txt")
    assert env["home"] == str(tmp_path)
    assert not marker.exists()


@pytest.mark.parametrize(
    ("script", "error_part"),
    [
        ("echo 'this is not json'", "json"),
        ("echo '{\"a\": 1} trailing'", "json"),
        ("echo '{\"a\": 1}'; echo '{\"b\": 2}'", "json"),
        ("true", "no output"),
        ("echo 'boom on stderr' >&2; exit 7", "boom on stderr"),
    ],
    ids=["not-json", "trailing-text", "two-values", "empty", "non-zero-exit"],
)
def test_bad_handler_output_fails_the_attempt(run_flow, ledger, script, error_part):
    r = run_flow(
        f"""
handlers:
  - name: bad
    exec: |
      echo "bad $FLOXY_RETRY_COUNT" >> "$LEDGER"
      {script}
flows:
  - name: bad_flow
    steps:
      - name: bad
        max_retries: 1
        retry_delay: 5ms
"""
    )
    assert r.code == 1, r.describe()
    assert r.status == "failed"
    assert ledger.lines() == ["bad 0", "bad 1"]  # each bad output is a failed, retried attempt
    assert error_part.lower() in r.doc["error"].lower(), r.doc["error"]
    assert error_part.lower() in (r.step("bad")["error"] or "").lower()


def test_non_zero_exit_error_names_the_exit_code(run_flow):
    r = run_flow(
        """
handlers:
  - name: bad
    exec: |
      echo "disk full" >&2
      exit 42
flows:
  - name: bad_flow
    steps: [{name: bad, max_retries: 0}]
"""
    )
    assert r.code == 1, r.describe()
    assert "42" in r.doc["error"]
    assert "disk full" in r.doc["error"]


def test_any_single_json_value_is_a_valid_output(run_flow):
    values = {
        "str": '"just a string"',
        "num": "42",
        "arr": "[1, 2, 3]",
        "nul": "null",
        "boo": "true",
        "obj": '{"a": {"b": 1}}',
    }
    tasks = "".join(f"\n          - {{name: {k}, handler: {k}}}" for k in values)
    handlers = "".join(f"\n  - name: {k}\n    exec: |\n      echo '{v}'" for k, v in values.items())
    r = run_flow(
        f"""
handlers:{handlers}
flows:
  - name: any_json
    steps:
      - type: parallel
        name: p
        tasks:{tasks}
"""
    )
    assert r.code == 0, r.describe()
    assert r.output["outputs"] == {k: json.loads(v) for k, v in values.items()}


def test_inline_scripts_run_with_set_e(run_flow, ledger):
    r = run_flow(
        """
handlers:
  - name: stops
    exec: |
      false
      echo "reached" >> "$LEDGER"
      echo '{}'
flows:
  - name: set_e
    steps: [{name: stops, max_retries: 0}]
"""
    )
    assert r.code == 1, r.describe()
    assert ledger.lines() == []


def test_single_line_inline_exec_runs_as_a_script(run_flow):
    r = run_flow(
        """
handlers:
  - name: one
    exec: "echo '{\\"one\\": 1}'"
flows:
  - name: single
    steps: [one]
"""
    )
    assert r.code == 0, r.describe()
    assert r.output == {"one": 1}


def test_script_file_handler_relative_to_the_yaml_and_not_executable(run_flow, ledger, tmp_path):
    scripts = tmp_path / "wf" / "scripts"
    scripts.mkdir(parents=True)
    script = scripts / "pretty.sh"
    script.write_text(
        '#!/bin/bash\necho "pretty $FLOXY_STEP_NAME $NAME" >> "$LEDGER"\n'
        'jq \'. + {greeting: ("hello " + .name), list: [1, 2]}\' <<<"$INPUT"\n'
    )
    script.chmod(0o644)  # bash runs it; the executable bit is not needed
    yaml_text = """
handlers:
  - name: pretty
    exec: ./scripts/pretty.sh
flows:
  - name: file_flow
    steps: [pretty]
"""
    yaml_path = tmp_path / "wf" / "flow.yaml"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    # the YAML lives in wf/, the process runs in elsewhere/: the path is resolved from the YAML
    r = run_flow(yaml_text, input={"name": "ann"}, yaml_name="wf/flow.yaml", cwd=elsewhere)
    assert r.yaml_path == yaml_path
    assert r.code == 0, r.describe()
    assert r.output == {"name": "ann", "greeting": "hello ann", "list": [1, 2]}
    assert ledger.lines() == ["pretty pretty ann"]


# --------------------------------------------------------------------------------------------
# Input


ECHO_INPUT = """
handlers:
  - name: echo_in
    exec: |
      echo "$INPUT"
flows:
  - name: echo
    steps: [echo_in]
"""


def test_input_from_stdin_pipe(run_flow):
    r = run_flow(ECHO_INPUT, input='{"from": "stdin", "n": [1, 2]}\n')
    assert r.code == 0, r.describe()
    assert r.doc["input"] == {"from": "stdin", "n": [1, 2]}
    assert r.output == {"from": "stdin", "n": [1, 2]}


def test_input_from_file_flag(run_flow):
    r = run_flow(ECHO_INPUT, input_file={"from": "file"})
    assert r.code == 0, r.describe()
    assert r.output == {"from": "file"}


@pytest.mark.parametrize("source", ["stdin", "file"])
def test_invalid_input_json_is_a_usage_error_without_traceback(run_flow, tmp_path, source):
    bad = '{"a": 1,,}'
    if source == "stdin":
        r = run_flow(ECHO_INPUT, input=bad)
    else:
        path = tmp_path / "bad.json"
        path.write_text(bad)
        r = run_flow(ECHO_INPUT, input_file=path)
    assert r.code == 2, r.describe()
    assert "Traceback" not in r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, r.stderr
    assert "json" in lines[0].lower() or "input" in lines[0].lower(), lines[0]


def test_missing_input_file_is_a_usage_error(run_flow, tmp_path):
    r = run_flow(ECHO_INPUT, input_file=Path(tmp_path / "nope.json"))
    assert r.code == 2, r.describe()
    assert "Traceback" not in r.stderr


def test_fork_branch_with_a_condition_is_joined_on_the_path_taken(run_flow, ledger):
    yaml_text = (
        FORK
        + """
  - name: big
    exec: |
      echo "big" >> "$LEDGER"
      echo '{"size": "big"}'
  - name: small
    exec: |
      echo "small" >> "$LEDGER"
      echo '{"size": "small"}'
flows:
  - name: fork_cond
    steps:
      - type: fork
        name: f
        branches:
          - - type: condition
              name: is_big
              expr: "{{ gt .v 10 }}"
              else: [small]
            - big
          - [slow]
      - after
"""
    )
    for v, taken in ((50, "big"), (5, "small")):
        if ledger.path.exists():
            ledger.path.unlink()
        r = run_flow(yaml_text, input={"v": v})
        assert r.code == 0, r.describe()
        # the join waited for the slow branch and for the branch's real last step
        assert sorted(r.output["completed"]) == sorted([taken, "slow"]), r.describe()
        assert r.output["keys"] == sorted([taken, "slow"])
        names = [ln.split()[0] for ln in ledger.lines()]
        assert names.count("after") == 1, names
        assert names[-1] == "after", names


def test_flow_level_max_retries_is_the_default_for_its_tasks(run_flow, ledger):
    r = run_flow(
        """
handlers:
  - name: broken
    exec: |
      echo "broken $FLOXY_RETRY_COUNT" >> "$LEDGER"
      exit 1
flows:
  - name: flow_default
    max_retries: 1
    steps:
      - {name: broken, retry_delay: 5ms}
"""
    )
    assert r.code == 1, r.describe()
    assert ledger.lines() == ["broken 0", "broken 1"]


def test_delay_is_waited_before_the_first_run(run_flow, ledger):
    r = run_flow(
        """
handlers:
  - name: stamp
    exec: |
      echo "$FLOXY_STEP_NAME $(date +%s%N)" >> "$LEDGER"
      echo '{}'
flows:
  - name: delayed
    steps:
      - {name: one, handler: stamp}
      - {name: two, handler: stamp, delay: 400ms}
"""
    )
    assert r.code == 0, r.describe()
    (one, t1), (two, t2) = (ln.split() for ln in ledger.lines())
    assert (one, two) == ("one", "two")
    assert (int(t2) - int(t1)) / 1e9 >= 0.38


def test_input_cannot_change_how_the_script_runs(run_flow, tmp_path):
    r = run_flow(
        """
handlers:
  - name: env
    exec: |
      words="a b c"
      set -- $words
      jq -n -c --arg n "$#" --arg shell "${SHELL-unset}" --arg env "${ENV-unset}" \\
        --arg ifs "$(printf %s "$IFS" | od -An -c | tr -d ' ')" '$ARGS.named'
flows:
  - name: env_flow
    steps: [env]
""",
        input={"ifs": "x", "IFS": "y", "shell": "/bin/false", "env": "/tmp/evil"},
        env={"SHELL": "/bin/bash"},
    )
    assert r.code == 0, r.describe()
    assert r.output["n"] == "3"  # word splitting still on blanks
    assert r.output["shell"] == "/bin/bash"
    assert r.output["env"] == "unset"


def test_exponential_retry_delay_is_capped_by_retry_max_delay(run_flow, ledger):
    r = run_flow(
        """
handlers:
  - name: broken
    exec: |
      echo "broken $(date +%s%N)" >> "$LEDGER"
      exit 1
flows:
  - name: spaced
    steps:
      - name: broken
        max_retries: 5
        retry_delay: 50ms
        retry_strategy: exponential
        retry_max_delay: 100ms
"""
    )
    assert r.code == 1, r.describe()
    stamps = [int(ln.split()[1]) / 1e9 for ln in ledger.lines()]
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    assert len(gaps) == 5, ledger.lines()
    # 50, then 100, 200, 400, 800 capped at 100
    for gap, low in zip(gaps, (0.045, 0.095, 0.095, 0.095, 0.095), strict=True):
        assert gap >= low, gaps
    assert gaps[4] < 0.5, gaps  # capped, not 800 ms


def test_debug_flag_sets_floxy_debug_and_logs_handler_stderr(run_flow):
    r = run_flow(
        """
handlers:
  - name: dbg
    exec: |
      echo "note for the log" >&2
      jq -n -c --arg d "$FLOXY_DEBUG" '{debug: $d}'
flows:
  - name: dbg
    steps: [dbg]
""",
        "-D",
    )
    assert r.code == 0, r.describe()
    assert r.output == {"debug": "true"}
    assert "note for the log" in r.stderr
