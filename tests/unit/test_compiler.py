"""The compiler: graph shapes of every step kind, from YAML and from the Python builder.

Each shape is written twice, as YAML (loader + compiler, `floxy_core/spec/`) and with the
`Builder` a library user calls (`floxy_core/builder.py`). `both()` compiles the two, checks that
they give the same graph, and returns it; the test then asserts the links (`next`, `prev`,
`else`, `parallel`, `wait_for`, ...) of that one graph.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from textwrap import dedent
from typing import Any

import pytest

from floxy_core.builder import Builder, Compensation, Options, Task
from floxy_core.errors import DefinitionError, ValidationError
from floxy_core.graph import graph_of
from floxy_core.model import (
    ROOT,
    JoinStrategy,
    RetryStrategy,
    StepDefinition,
    StepType,
    WorkflowDefinition,
)
from floxy_core.spec import load_workflow_text

HANDLERS = """\
handlers:
  - {name: h, exec: "echo {}"}
  - {name: a, exec: "echo {}"}
  - {name: b, exec: "echo {}"}
  - {name: c, exec: "echo {}"}
  - {name: undo, exec: "echo {}"}
  - {name: refund, exec: "echo {}"}
"""


def compile_yaml(flow: str) -> WorkflowDefinition:
    """The only flow of HANDLERS + `flow` (a `flows:` document, dedented)."""
    loaded = load_workflow_text(HANDLERS + dedent(flow), "wf.yaml")
    assert len(loaded.flows) == 1
    return loaded.flows[0]


def shape(definition: WorkflowDefinition) -> dict[str, Any]:
    """Everything the graph says, in step order, minus the handler `exec` the YAML copies in."""
    steps = []
    for name, step in definition.steps.items():
        data = step.to_json()
        data["metadata"].pop("exec", None)
        steps.append((name, data))
    return {
        "id": definition.id,
        "start": definition.start,
        "dlq": definition.dlq_enabled,
        "steps": steps,
    }


def both(flow: str, build: Callable[[], Builder]) -> WorkflowDefinition:
    """Compile the YAML and the builder flow; they must be the same graph."""
    from_yaml = compile_yaml(flow)
    from_builder = build().build()
    assert shape(from_yaml) == shape(from_builder)
    assert from_yaml.content_hash == from_builder.content_hash
    return from_yaml


def links(step: StepDefinition) -> dict[str, Any]:
    return {
        "type": step.type,
        "prev": step.prev,
        "next": step.next,
        "else": step.else_step,
        "parallel": step.parallel,
        "wait_for": step.wait_for,
    }


def link(
    kind: StepType,
    prev: str,
    next: tuple[str, ...] = (),
    *,
    else_: str | None = None,
    parallel: tuple[str, ...] = (),
    wait_for: tuple[str, ...] = (),
) -> dict[str, Any]:
    return {
        "type": kind,
        "prev": prev,
        "next": next,
        "else": else_,
        "parallel": parallel,
        "wait_for": wait_for,
    }


def reachable(definition: WorkflowDefinition) -> set[str]:
    return {definition.start, *graph_of(definition).descendants(definition.start)}


T, COND, PAR, FORK, JOIN, SP, HUMAN = (
    StepType.TASK,
    StepType.CONDITION,
    StepType.PARALLEL,
    StepType.FORK,
    StepType.JOIN,
    StepType.SAVE_POINT,
    StepType.HUMAN,
)


# --------------------------------------------------------------------------------------------
# id and task chains


def test_id_is_name_and_version() -> None:
    wf = both(
        """\
        flows:
          - name: order
            version: 3
            steps: [a]
        """,
        lambda: Builder("order", version=3).step("a"),
    )
    assert wf.id == "order-v3"
    assert (wf.name, wf.version) == ("order", 3)


def test_version_defaults_to_1() -> None:
    wf = both("flows: [{name: order, steps: [a]}]\n", lambda: Builder("order").step("a"))
    assert wf.id == "order-v1"


def test_tasks_chain_next_and_prev() -> None:
    wf = both(
        """\
        flows:
          - name: chain
            steps:
              - a
              - {name: second, handler: b}
              - {name: third, handler: c, max_retries: 1, timeout: 2s, priority: 70}
        """,
        lambda: (
            Builder("chain")
            .step("a")
            .step("second", "b")
            .then("third", "c", Options(max_retries=1, timeout_ms=2000, priority=70))
        ),
    )
    assert wf.start == "a"
    assert list(wf.steps) == ["a", "second", "third"]
    assert links(wf.steps["a"]) == link(T, ROOT, ("second",))
    assert links(wf.steps["second"]) == link(T, "a", ("third",))
    assert links(wf.steps["third"]) == link(T, "second")
    assert [wf.steps[n].handler for n in wf.steps] == ["a", "b", "c"]  # shorthand: own name
    third = wf.steps["third"]
    assert (third.max_retries, third.timeout_ms, third.priority) == (1, 2000, 70)


def test_task_options_compile() -> None:
    wf = both(
        """\
        flows:
          - name: opts
            steps:
              - name: s
                handler: h
                no_idempotent: true
                delay: 250
                retry_delay: 1s
                retry_strategy: exponential
                retry_max_delay: 1m
                retry_jitter: true
                metadata: {team: ops}
        """,
        lambda: Builder("opts").step(
            "s",
            "h",
            Options(
                no_idempotent=True,
                delay_ms=250,
                retry_delay_ms=1000,
                retry_strategy=RetryStrategy.EXPONENTIAL,
                retry_max_delay_ms=60_000,
                retry_jitter=True,
                metadata={"team": "ops"},
            ),
        ),
    )
    s = wf.steps["s"]
    assert s.no_idempotent and s.retry_jitter
    assert (s.delay_ms, s.retry_delay_ms, s.retry_max_delay_ms) == (250, 1000, 60_000)
    assert s.retry_strategy is RetryStrategy.EXPONENTIAL
    assert s.metadata["team"] == "ops"
    assert s.metadata["exec"] == "echo {}"  # the YAML compiler copies the handler's exec in


# --------------------------------------------------------------------------------------------
# condition


def test_condition_next_and_else() -> None:
    wf = both(
        """\
        flows:
          - name: cond
            steps:
              - a
              - type: condition
                name: big
                expr: "{{ gt .amount 100 }}"
                else:
                  - {name: small1, handler: b}
                  - {name: small2, handler: b}
              - {name: large1, handler: c}
              - {name: large2, handler: c}
        """,
        lambda: (
            Builder("cond")
            .step("a")
            .condition(
                "big",
                "{{ gt .amount 100 }}",
                lambda e: e.step("small1", "b").step("small2", "b"),
            )
            .step("large1", "c")
            .step("large2", "c")
        ),
    )
    assert links(wf.steps["a"]) == link(T, ROOT, ("big",))
    assert links(wf.steps["big"]) == link(COND, "a", ("large1",), else_="small1")
    assert wf.steps["big"].condition == "{{ gt .amount 100 }}"
    assert links(wf.steps["small1"]) == link(T, "big", ("small2",))
    assert links(wf.steps["small2"]) == link(T, "small1")
    assert links(wf.steps["large1"]) == link(T, "big", ("large2",))
    assert links(wf.steps["large2"]) == link(T, "large1")
    # branches do not re-merge: neither branch leads into the other
    assert "large1" not in graph_of(wf).descendants("small1")
    assert "small1" not in graph_of(wf).descendants("large1")


def test_condition_false_branch_without_else_ends_the_path() -> None:
    wf = both(
        """\
        flows:
          - name: cond
            steps:
              - a
              - {type: condition, name: c1, expr: "{{ .ok }}"}
              - b
        """,
        lambda: Builder("cond").step("a").condition("c1", "{{ .ok }}").step("b"),
    )
    c1 = wf.steps["c1"]
    assert links(c1) == link(COND, "a", ("b",))
    assert c1.else_step is None  # false: no step to go to, the path ends here


def test_condition_as_last_step_has_no_next() -> None:
    wf = both(
        """\
        flows:
          - name: cond
            steps:
              - a
              - {type: condition, name: c1, expr: "{{ .ok }}", else: [b]}
        """,
        lambda: Builder("cond").step("a").condition("c1", "{{ .ok }}", lambda e: e.step("b")),
    )
    assert links(wf.steps["c1"]) == link(COND, "a", else_="b")
    assert links(wf.steps["b"]) == link(T, "c1")


def test_condition_alias_key() -> None:
    wf = compile_yaml(
        """\
        flows:
          - name: cond
            steps:
              - a
              - {type: condition, name: c1, condition: '{{ eq .kind "x" }}'}
        """
    )
    assert wf.steps["c1"].condition == '{{ eq .kind "x" }}'


@pytest.mark.parametrize(
    ("keys", "expected"),
    [
        ('expr: "{{ .a }}", condition: "{{ .b }}"', "{{ .a }}"),  # a non-empty expr wins
        ('expr: "", condition: "{{ .b }}"', "{{ .b }}"),  # an empty expr does not
        ('expr: "{{ .a }}", condition: ""', "{{ .a }}"),
    ],
)
def test_expr_and_condition_both_given(keys: str, expected: str) -> None:
    wf = compile_yaml(
        f"""\
        flows:
          - name: cond
            steps:
              - a
              - {{type: condition, name: c1, {keys}}}
        """
    )
    assert wf.steps["c1"].condition == expected


@pytest.mark.parametrize(
    ("keys", "where"),
    [
        ('expr: ""', "flows[0].steps[1].expr"),
        ('expr: "", condition: ""', "flows[0].steps[1].condition"),
        ('condition: ""', "flows[0].steps[1].condition"),
    ],
)
def test_no_usable_expression_is_an_error(keys: str, where: str) -> None:
    with pytest.raises(ValidationError) as info:
        compile_yaml(
            f"""\
            flows:
              - name: cond
                steps:
                  - a
                  - {{type: condition, name: c1, {keys}}}
            """
        )
    (error,) = info.value.errors
    assert (error.path, error.message) == (where, "must not be empty")


def test_unknown_retry_strategy_compiles_as_fixed_with_warnings() -> None:
    text = HANDLERS + dedent(
        """\
        flows:
          - name: lenient
            steps:
              - {name: a, retry_strategy: backoff, metadata: {retry_strategy: free-form}}
              - type: parallel
                name: p
                tasks:
                  - {name: b, retry_strategy: Linear}
                  - {name: c, on_failure: {handler: undo, retry_strategy: "2x"}}
              - {name: h, retry_strategy: ""}
        """
    )
    loaded = load_workflow_text(text, "wf.yaml")
    wf = loaded.flows[0]
    for name in ("a", "b", "c", "undo", "h"):
        assert wf.steps[name].retry_strategy is RetryStrategy.FIXED, name
    assert wf.steps["a"].metadata["retry_strategy"] == "free-form"  # user data, untouched

    def at(token: str) -> tuple[int, int]:
        """1-based line and column of the value `token` in `text`."""
        for number, line in enumerate(text.splitlines(), 1):
            if f"retry_strategy: {token}" in line:
                return number, line.index(f"retry_strategy: {token}") + len("retry_strategy: ") + 1
        raise AssertionError(token)

    assert [(w.line, w.column, w.path) for w in loaded.warnings] == [
        (*at("backoff"), "flows[0].steps[0].retry_strategy"),
        (*at("Linear"), "flows[0].steps[1].tasks[0].retry_strategy"),
        (*at('"2x"'), "flows[0].steps[1].tasks[1].on_failure.retry_strategy"),
    ]
    assert loaded.warnings[0].message == (
        'unknown retry_strategy "backoff" is treated as fixed '
        "(expected fixed, linear or exponential)"
    )


def test_known_retry_strategies_give_no_warning() -> None:
    loaded = load_workflow_text(
        HANDLERS + "flows: [{name: f, steps: [{name: a, retry_strategy: linear}]}]\n"
    )
    assert loaded.warnings == ()
    assert loaded.flows[0].steps["a"].retry_strategy is RetryStrategy.LINEAR


def test_a_wrong_type_of_retry_strategy_is_still_an_error() -> None:
    with pytest.raises(ValidationError) as info:
        load_workflow_text(HANDLERS + "flows: [{name: f, steps: [{name: a, retry_strategy: 5}]}]\n")
    (error,) = info.value.errors
    assert error.path == "flows[0].steps[0].retry_strategy"


def test_condition_else_branch_may_hold_any_step_kind() -> None:
    wf = both(
        """\
        flows:
          - name: cond
            steps:
              - a
              - type: condition
                name: c1
                expr: "{{ .ok }}"
                else:
                  - {type: parallel, name: p, tasks: [b, c]}
                  - {type: savepoint, name: sp}
                  - {type: human, name: ask}
              - h
        """,
        lambda: (
            Builder("cond")
            .step("a")
            .condition(
                "c1",
                "{{ .ok }}",
                lambda e: (
                    e.parallel("p", Task("b", "b"), Task("c", "c"))
                    .save_point("sp")
                    .wait_human_confirm("ask")
                ),
            )
            .step("h")
        ),
    )
    assert links(wf.steps["c1"]) == link(COND, "a", ("h",), else_="p")
    assert links(wf.steps["p"]) == link(PAR, "c1", ("p_join",), parallel=("b", "c"))
    assert links(wf.steps["p_join"]) == link(JOIN, "p", ("sp",), wait_for=("b", "c"))
    assert links(wf.steps["sp"]) == link(SP, "p_join", ("ask",))
    assert links(wf.steps["ask"]) == link(HUMAN, "sp")


# --------------------------------------------------------------------------------------------
# parallel


def test_parallel_is_followed_by_its_join() -> None:
    wf = both(
        """\
        flows:
          - name: par
            steps:
              - a
              - type: parallel
                name: notify
                tasks:
                  - b
                  - {name: sms, handler: c, max_retries: 1}
              - h
        """,
        lambda: (
            Builder("par")
            .step("a")
            .parallel("notify", Task("b", "b"), Task("sms", "c", Options(max_retries=1)))
            .step("h")
        ),
    )
    assert links(wf.steps["a"]) == link(T, ROOT, ("notify",))
    assert links(wf.steps["notify"]) == link(PAR, "a", ("notify_join",), parallel=("b", "sms"))
    assert links(wf.steps["b"]) == link(T, "notify")
    assert links(wf.steps["sms"]) == link(T, "notify")
    join = wf.steps["notify_join"]
    # the join follows the parallel step itself (the reference hung it off the previous step)
    assert links(join) == link(JOIN, "notify", ("h",), wait_for=("b", "sms"))
    assert join.join_strategy is JoinStrategy.ALL
    assert links(wf.steps["h"]) == link(T, "notify_join")
    assert wf.steps["sms"].max_retries == 1


def test_flow_may_start_with_a_parallel() -> None:
    wf = both(
        """\
        flows:
          - name: par_first
            steps:
              - {type: parallel, name: p, tasks: [a, b]}
              - c
        """,
        lambda: Builder("par_first").parallel("p", Task("a", "a"), Task("b", "b")).step("c"),
    )
    assert wf.start == "p"
    assert links(wf.steps["p"]) == link(PAR, ROOT, ("p_join",), parallel=("a", "b"))
    assert links(wf.steps["p_join"]) == link(JOIN, "p", ("c",), wait_for=("a", "b"))
    assert reachable(wf) == {"p", "a", "b", "p_join", "c"}


def test_parallel_tasks_accept_on_failure() -> None:
    wf = both(
        """\
        flows:
          - name: par
            steps:
              - type: parallel
                name: p
                tasks:
                  - {name: a, on_failure: undo}
                  - {name: b, on_failure: {handler: refund, name: undo_b, max_retries: 1}}
        """,
        lambda: Builder("par").parallel(
            "p",
            Task("a", "a", on_failure=Compensation("undo", "undo")),
            Task("b", "b", on_failure=Compensation("undo_b", "refund", Options(max_retries=1))),
        ),
    )
    assert wf.steps["a"].on_failure == "undo"
    assert wf.steps["b"].on_failure == "undo_b"
    assert wf.steps["undo"].compensation and wf.steps["undo_b"].compensation
    assert (wf.steps["undo_b"].handler, wf.steps["undo_b"].max_retries) == ("refund", 1)


# --------------------------------------------------------------------------------------------
# fork and join


def test_fork_branches_and_default_join() -> None:
    wf = both(
        """\
        flows:
          - name: forked
            steps:
              - a
              - type: fork
                name: fulfil
                branches:
                  - [{name: ship, handler: b}]
                  - [{name: invoice, handler: c}, {name: email, handler: h}]
              - {name: done, handler: h}
        """,
        lambda: (
            Builder("forked")
            .step("a")
            .fork(
                "fulfil",
                lambda x: x.step("ship", "b"),
                lambda x: x.step("invoice", "c").step("email", "h"),
            )
            .join("fulfil_join")
            .step("done", "h")
        ),
    )
    assert links(wf.steps["fulfil"]) == link(
        FORK, "a", ("fulfil_join",), parallel=("ship", "invoice")
    )
    assert links(wf.steps["ship"]) == link(T, "fulfil")
    assert links(wf.steps["invoice"]) == link(T, "fulfil", ("email",))
    assert links(wf.steps["email"]) == link(T, "invoice")
    join = wf.steps["fulfil_join"]
    assert links(join) == link(JOIN, "fulfil", ("done",), wait_for=("ship", "email"))
    assert join.join_strategy is JoinStrategy.ALL
    assert links(wf.steps["done"]) == link(T, "fulfil_join")


def test_fork_with_a_named_any_join() -> None:
    wf = both(
        """\
        flows:
          - name: forked
            steps:
              - type: fork
                name: race
                branches: [[a], [b]]
                join: {name: first_wins, strategy: any}
              - c
        """,
        lambda: (
            Builder("forked")
            .fork("race", lambda x: x.step("a"), lambda x: x.step("b"))
            .join("first_wins", JoinStrategy.ANY)
            .step("c")
        ),
    )
    assert wf.start == "race"
    assert links(wf.steps["race"]) == link(FORK, ROOT, ("first_wins",), parallel=("a", "b"))
    join = wf.steps["first_wins"]
    assert links(join) == link(JOIN, "race", ("c",), wait_for=("a", "b"))
    assert join.join_strategy is JoinStrategy.ANY
    assert "race_join" not in wf.steps


def test_fork_branch_with_a_condition_waits_for_its_virtual_name() -> None:
    wf = both(
        """\
        flows:
          - name: forked
            steps:
              - type: fork
                name: f
                branches:
                  - - a
                    - {type: condition, name: check, expr: "{{ .ok }}", else: [b]}
                    - c
                  - [h]
        """,
        lambda: (
            Builder("forked")
            .fork(
                "f",
                lambda x: (
                    x.step("a").condition("check", "{{ .ok }}", lambda e: e.step("b")).step("c")
                ),
                lambda x: x.step("h"),
            )
            .join("f_join")
        ),
    )
    assert links(wf.steps["check"]) == link(COND, "a", ("c",), else_="b")
    # whichever path the condition takes ends the branch: the join waits for `cond#check`
    assert links(wf.steps["f_join"]) == link(JOIN, "f", wait_for=("cond#check", "h"))
    assert "cond#check" not in wf.steps  # virtual: not a step of the graph


def test_fork_branch_ending_in_a_parallel_waits_for_its_join() -> None:
    wf = both(
        """\
        flows:
          - name: forked
            steps:
              - type: fork
                name: f
                branches:
                  - [{type: parallel, name: p, tasks: [a, b]}]
                  - [{type: human, name: sp}, c]
        """,
        lambda: (
            Builder("forked")
            .fork(
                "f",
                lambda x: x.parallel("p", Task("a", "a"), Task("b", "b")),
                lambda x: x.wait_human_confirm("sp").step("c"),
            )
            .join("f_join")
        ),
    )
    assert wf.steps["f"].parallel == ("p", "sp")
    assert links(wf.steps["p"]) == link(PAR, "f", ("p_join",), parallel=("a", "b"))
    assert links(wf.steps["sp"]) == link(HUMAN, "f", ("c",))
    assert links(wf.steps["f_join"]) == link(JOIN, "f", wait_for=("p_join", "c"))


def test_nested_fork() -> None:
    wf = both(
        """\
        flows:
          - name: nested
            steps:
              - type: fork
                name: outer
                branches:
                  - - type: fork
                      name: inner
                      branches: [[a], [b]]
                  - [c]
              - h
        """,
        lambda: (
            Builder("nested")
            .fork(
                "outer",
                lambda x: x.fork("inner", lambda y: y.step("a"), lambda y: y.step("b")).join(
                    "inner_join"
                ),
                lambda x: x.step("c"),
            )
            .join("outer_join")
            .step("h")
        ),
    )
    assert links(wf.steps["inner"]) == link(FORK, "outer", ("inner_join",), parallel=("a", "b"))
    assert links(wf.steps["inner_join"]) == link(JOIN, "inner", wait_for=("a", "b"))
    assert links(wf.steps["outer_join"]) == link(
        JOIN, "outer", ("h",), wait_for=("inner_join", "c")
    )


# --------------------------------------------------------------------------------------------
# savepoint and human


@pytest.mark.parametrize("kind", ["savepoint", "save_point"])
def test_savepoint(kind: str) -> None:
    wf = both(
        f"""\
        flows:
          - name: sp
            steps:
              - a
              - {{type: {kind}, name: paid}}
              - b
        """,
        lambda: Builder("sp").step("a").save_point("paid").step("b"),
    )
    assert links(wf.steps["paid"]) == link(SP, "a", ("b",))
    assert wf.steps["paid"].handler is None
    assert links(wf.steps["b"]) == link(T, "paid")


def test_human() -> None:
    wf = both(
        """\
        flows:
          - name: approval
            steps:
              - a
              - {type: human, name: approve, timeout: 24h, metadata: {role: manager}}
              - b
        """,
        lambda: (
            Builder("approval")
            .step("a")
            .wait_human_confirm("approve", timeout_ms=86_400_000, metadata={"role": "manager"})
            .step("b")
        ),
    )
    approve = wf.steps["approve"]
    assert links(approve) == link(HUMAN, "a", ("b",))
    assert (approve.timeout_ms, dict(approve.metadata), approve.handler) == (
        86_400_000,
        {"role": "manager"},
        None,
    )


# --------------------------------------------------------------------------------------------
# on_failure compensation


def test_on_failure_string_form() -> None:
    wf = both(
        """\
        flows:
          - name: saga
            steps:
              - {name: a, on_failure: undo}
              - b
        """,
        lambda: Builder("saga").step("a").on_failure("undo").step("b"),
    )
    assert wf.steps["a"].on_failure == "undo"
    undo = wf.steps["undo"]
    assert (undo.type, undo.handler, undo.compensation) == (T, "undo", True)
    assert (undo.prev, undo.next) == ("", ())
    assert "undo" not in reachable(wf)  # compensations hang off their step, not the flow
    assert links(wf.steps["a"]) == link(T, ROOT, ("b",))


def test_on_failure_mapping_form() -> None:
    wf = both(
        """\
        flows:
          - name: saga
            steps:
              - name: a
                on_failure:
                  handler: refund
                  name: undo_a
                  max_retries: 1
                  retry_delay: 2s
                  retry_strategy: linear
                  timeout: 5s
              - name: b
                on_failure: {handler: refund}
        """,
        lambda: (
            Builder("saga")
            .step("a")
            .on_failure(
                "undo_a",
                "refund",
                Options(
                    max_retries=1,
                    retry_delay_ms=2000,
                    retry_strategy=RetryStrategy.LINEAR,
                    timeout_ms=5000,
                ),
            )
            .step("b")
            .on_failure("refund", "refund")
        ),
    )
    undo_a = wf.steps["undo_a"]
    assert wf.steps["a"].on_failure == "undo_a"
    assert (undo_a.handler, undo_a.max_retries, undo_a.retry_delay_ms) == ("refund", 1, 2000)
    assert (undo_a.retry_strategy, undo_a.timeout_ms) == (RetryStrategy.LINEAR, 5000)
    # without a name the compensation is named after its handler
    assert wf.steps["b"].on_failure == "refund"
    assert wf.steps["refund"].compensation


def test_shared_compensation_is_one_step() -> None:
    wf = both(
        """\
        flows:
          - name: saga
            steps:
              - {name: a, on_failure: undo}
              - {name: b, on_failure: undo}
        """,
        lambda: Builder("saga").step("a").on_failure("undo").step("b").on_failure("undo"),
    )
    assert [n for n, s in wf.steps.items() if s.compensation] == ["undo"]
    assert wf.steps["a"].on_failure == wf.steps["b"].on_failure == "undo"


def test_on_failure_inside_branches() -> None:
    wf = both(
        """\
        flows:
          - name: saga
            steps:
              - {type: condition, name: c1, expr: "{{ .ok }}", else: [{name: e, handler: b, on_failure: undo}]}
              - {name: t, handler: a, on_failure: undo}
        """,  # noqa: E501
        lambda: (
            Builder("saga")
            .condition("c1", "{{ .ok }}", lambda x: x.step("e", "b").on_failure("undo"))
            .step("t", "a")
            .on_failure("undo")
        ),
    )
    assert wf.steps["e"].on_failure == wf.steps["t"].on_failure == "undo"
    assert wf.steps["undo"].compensation


# --------------------------------------------------------------------------------------------
# default max_retries per step kind

KINDS_FLOW = """\
flows:
  - name: kinds
    {flow_max_retries}
    steps:
      - {{name: a, on_failure: undo}}
      - {{name: pinned, handler: b, max_retries: 0}}
      - {{type: condition, name: cond, expr: "{{{{ .ok }}}}"}}
      - {{type: parallel, name: par, tasks: [b, c]}}
      - type: fork
        name: fk
        branches: [[{{name: x, handler: h}}], [{{name: y, handler: h}}]]
      - {{type: savepoint, name: sp}}
      - {{type: human, name: hu}}
"""


def kinds_builder(max_retries: int | None) -> Builder:
    kw = {} if max_retries is None else {"max_retries": max_retries}
    return (
        Builder("kinds", **kw)
        .step("a")
        .on_failure("undo")
        .step("pinned", "b", Options(max_retries=0))
        .condition("cond", "{{ .ok }}")
        .parallel("par", Task("b", "b"), Task("c", "c"))
        .fork("fk", lambda x: x.step("x", "h"), lambda x: x.step("y", "h"))
        .join("fk_join")
        .save_point("sp")
        .wait_human_confirm("hu")
    )


@pytest.mark.parametrize(("flow_max_retries", "task_default"), [(None, 3), (5, 5), (0, 0)])
def test_default_max_retries_per_kind(flow_max_retries: int | None, task_default: int) -> None:
    setting = "" if flow_max_retries is None else f"max_retries: {flow_max_retries}"
    wf = both(
        KINDS_FLOW.format(flow_max_retries=setting),
        lambda: kinds_builder(flow_max_retries),
    )
    retries = {name: step.max_retries for name, step in wf.steps.items()}
    assert retries == {
        # tasks (including parallel and fork branch tasks) and compensations: the flow default
        "a": task_default,
        "undo": task_default,
        "b": task_default,
        "c": task_default,
        "x": task_default,
        "y": task_default,
        # an explicit value wins
        "pinned": 0,
        # never retried
        "cond": 0,
        "par": 0,
        "par_join": 0,
        "fk": 0,
        "fk_join": 0,
        "sp": 0,
        "hu": 0,
    }


# --------------------------------------------------------------------------------------------
# YAML and builder agree on a flow using every kind at once

EVERYTHING = """\
flows:
  - name: order
    version: 2
    dlq: true
    max_retries: 4
    steps:
      - {name: reserve, handler: a, on_failure: {handler: undo, name: release}}
      - {type: savepoint, name: reserved}
      - type: condition
        name: big
        condition: "{{ gt .amount 100 }}"
        else:
          - {name: small, handler: b}
      - {type: parallel, name: notify, tasks: [{name: mail, handler: c, on_failure: undo}, b]}
      - type: fork
        name: fulfil
        branches:
          - [{name: ship, handler: h, retry_strategy: linear, retry_delay: 100}]
          - - {type: condition, name: express, expr: "{{ .express }}"}
            - {name: courier, handler: h}
        join: {name: fulfilled, strategy: any}
      - {type: human, name: approve, timeout: 1h}
      - {name: finish, handler: h, no_idempotent: true}
"""


def everything_builder() -> Builder:
    return (
        Builder("order", version=2, max_retries=4, dlq=True)
        .step("reserve", "a")
        .on_failure("release", "undo")
        .save_point("reserved")
        .condition("big", "{{ gt .amount 100 }}", lambda e: e.step("small", "b"))
        .parallel(
            "notify",
            Task("mail", "c", on_failure=Compensation("undo", "undo")),
            Task("b", "b"),
        )
        .fork(
            "fulfil",
            lambda x: x.step(
                "ship", "h", Options(retry_strategy=RetryStrategy.LINEAR, retry_delay_ms=100)
            ),
            lambda x: x.condition("express", "{{ .express }}").step("courier", "h"),
        )
        .join("fulfilled", "any")
        .wait_human_confirm("approve", timeout_ms=3_600_000)
        .step("finish", "h", Options(no_idempotent=True))
    )


def test_yaml_and_builder_give_the_same_graph() -> None:
    wf = both(EVERYTHING, everything_builder)
    assert wf.id == "order-v2" and wf.dlq_enabled
    assert wf.steps["fulfilled"].wait_for == ("ship", "cond#express")
    assert links(wf.steps["notify"]) == link(PAR, "big", ("notify_join",), parallel=("mail", "b"))
    # the true branch of `big` carries on with the rest of the flow
    assert wf.steps["big"].next == ("notify",)
    assert reachable(wf) == set(wf.steps) - {"release", "undo"}


def test_content_hash_ignores_where_handlers_live() -> None:
    moved = compile_yaml(EVERYTHING)
    other = load_workflow_text(
        HANDLERS.replace('"echo {}"', '"https://svc.example/x"') + EVERYTHING, "wf.yaml"
    ).flows[0]
    assert moved.content_hash == other.content_hash
    assert moved.steps["finish"].metadata["exec"] != other.steps["finish"].metadata["exec"]


# --------------------------------------------------------------------------------------------
# Builder misuse: every problem is reported, no half-built graph


@pytest.mark.parametrize(
    ("build", "fragment"),
    [
        (lambda: Builder("x"), "at least one step"),
        (lambda: Builder("x", version=0).step("a"), "version must be 1..2147483647"),
        (lambda: Builder("x").parallel("p", Task("a")), "at least 2 tasks"),
        (lambda: Builder("x").fork("f", lambda b: b.step("a")), "at least 2 branches"),
        (lambda: Builder("x").step("a").step("a"), "'a' already exists"),
        (lambda: Builder("x").step("cond#a"), "reserved"),
        (lambda: Builder("x").step("_root_"), "reserved"),
        (lambda: Builder("x").on_failure("undo"), "no step"),
        (lambda: Builder("x").save_point("s").on_failure("undo"), "is not a task"),
        (lambda: Builder("x").step("a").on_failure("b").step("b"), "'b' already exists"),
        (lambda: Builder("x").step("a").step("b").on_failure("a"), "shadows step 'a'"),
        (lambda: Builder("x").step("a").condition("c", ""), "expr is required"),
        (
            lambda: Builder("x").condition("c", "{{ .a }}", lambda e: e.step("a").step("a")),
            "else branch",
        ),
        (lambda: Builder("x").join("j"), "no step"),
    ],
)
def test_builder_rejects(build: Callable[[], Builder], fragment: str) -> None:
    with pytest.raises(DefinitionError) as info:
        build().build()
    assert fragment in str(info.value)


EXAMPLES = sorted((Path(__file__).parents[2] / "examples" / "yaml").glob("*.yaml"))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_a_definition_survives_the_store_round_trip(path: Path) -> None:
    """The store keeps definitions as JSON; what it reads back must be the same definition."""
    from floxy_core.spec import load_workflow_file

    for flow in load_workflow_file(path, require_handlers=False).flows:
        back = WorkflowDefinition.from_json(flow.name, flow.version, flow.to_json())
        assert back == flow
        assert back.content_hash == flow.content_hash
