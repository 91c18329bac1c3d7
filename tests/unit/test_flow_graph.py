"""`floxy_core.graph`: the structural answers the engine relies on, checked by hand on small
flows and against brute-force definitions (plain reachability, no `prev` walking) on random ones."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given

from floxy_core.builder import Builder, Compensation, Task, validate_definition
from floxy_core.errors import DefinitionError, HandlerError
from floxy_core.graph import FlowGraph, graph_of
from floxy_core.model import ROOT, StepDefinition, StepType, WorkflowDefinition
from floxy_core.ports import StepContext
from floxy_core.runtime import Runtime
from floxy_core.status import InstanceStatus
from floxy_core.storage.memory import MemoryStore
from tests.property.test_properties import fast, flow_specs


def _noop(ctx: StepContext, data: Any) -> Any:
    return data


def _order_flow() -> WorkflowDefinition:
    return (
        Builder("order")
        .step("reserve", "h")
        .on_failure("release", "h")
        .save_point("reserved")
        .parallel("notify", Task("email", "h", on_failure=Compensation("unmail", "h")), Task("sms"))
        .fork(
            "ship",
            lambda b: b.step("pack", "h").step("label", "h"),
            lambda b: b.fork("inner", lambda c: c.step("x", "h"), lambda c: c.step("y", "h")).join(
                "inner_join"
            ),
        )
        .join("ship_join")
        .save_point("shipped")  # not inside the fork: DECISIONS.md forbids that
        .condition("big", "true", lambda b: b.step("small", "h"))
        .step("done", "h")
        .build()
    )


def test_the_graph_is_built_once_per_definition() -> None:
    wf = _order_flow()
    assert graph_of(wf) is graph_of(wf)
    assert isinstance(graph_of(wf), FlowGraph)
    # it is no field: equality and hashing of the definition ignore it
    assert "_flow_graph" not in wf.to_json()
    assert WorkflowDefinition.from_json(wf.name, wf.version, wf.to_json()) == wf


def test_successors_follow_next_branches_then_else() -> None:
    g = graph_of(_order_flow())
    assert g.successors("reserve") == ("reserved",)
    assert g.successors("notify") == ("notify_join", "email", "sms")
    assert g.successors("big") == ("done", "small")
    assert g.successors("done") == ()
    assert g.successors("release") == ()  # a compensation hangs off no step


def test_enclosing_blocks_innermost_first() -> None:
    wf = _order_flow()
    g = graph_of(wf)
    ship, inner = wf.steps["ship"], wf.steps["inner"]
    assert g.enclosing_block("reserve") is None
    assert g.enclosing_block("label") == (ship, "pack")
    assert g.enclosing_blocks("x") == ((inner, "x"), (ship, "inner"))
    assert g.enclosing_blocks("inner_join") == ((ship, "inner"),)
    assert g.enclosing_blocks("ship_join") == ()
    assert g.enclosing_block("email") == (wf.steps["notify"], "email")


def test_joins_and_compensations() -> None:
    wf = _order_flow()
    g = graph_of(wf)
    assert g.join_of("notify") == wf.steps["notify_join"]
    assert g.join_of("inner") == wf.steps["inner_join"]
    assert g.join_of("reserve") is None
    assert g.compensation_of("reserve") == wf.steps["release"]
    assert g.compensation_of("email") == wf.steps["unmail"]
    assert g.compensation_of("sms") is None


def test_savepoints_above_nearest_first() -> None:
    g = graph_of(_order_flow())
    assert list(g.savepoints_above("label")) == ["reserved"]
    assert list(g.savepoints_above("shipped")) == ["reserved"]
    assert list(g.savepoints_above("done")) == ["shipped", "reserved"]
    assert list(g.savepoints_above("reserve")) == []
    assert g.savepoint_above("x") == "reserved"


def test_descendants_and_a_cycle_without_recursion() -> None:
    g = graph_of(_order_flow())
    assert g.descendants("big") == {"done", "small"}
    assert "reserve" not in g.descendants("reserved")
    steps = {
        f"s{i}": StepDefinition(
            name=f"s{i}",
            type=StepType.TASK,
            handler="h",
            next=(f"s{(i + 1) % 5000}",),
            prev=f"s{i - 1}" if i else ROOT,
        )
        for i in range(5000)
    }
    looped = WorkflowDefinition(name="loop", version=1, start="s0", steps=steps)
    with pytest.raises(DefinitionError, match=r"cycle detected: s0 -> s1 -> .* -> s4999 -> s0"):
        validate_definition(looped)


def test_a_5000_step_flow_and_a_1000_branch_fork_validate_and_run() -> None:
    """About 985 sequential steps used to raise RecursionError in the cycle check."""
    seq = Builder("seq")
    for i in range(5000):
        seq.step(f"s{i}", "noop")
    fork = Builder("fork").fork("f", *[lambda b, i=i: b.step(f"b{i}", "noop") for i in range(1000)])
    fork.join("j")
    for definition in (seq.build(), fork.build()):
        store = MemoryStore(seed=1)
        runtime = Runtime(store, {"noop": _noop}, workers=1)
        runtime.register(definition)
        instance_id = runtime.start_instance(definition.id, {"n": 1})
        while runtime.run_once("w"):
            pass
        assert store.get_instance(instance_id).status is InstanceStatus.COMPLETED
        assert len(store.get_steps(instance_id)) == len(definition.steps)


def test_compensations_run_newest_first_back_to_the_savepoint() -> None:
    calls: list[str] = []

    def record(ctx: StepContext, data: Any) -> Any:
        calls.append(f"undo {ctx.step_name}" if ctx.compensation else ctx.step_name)
        return data

    def boom(ctx: StepContext, data: Any) -> Any:
        raise HandlerError("boom", retryable=False)

    wf = (
        Builder("comp", max_retries=0)
        .step("a", "rec")
        .on_failure("ua", "rec")
        .save_point("sp")
        .step("b", "rec")
        .on_failure("ub", "rec")
        .step("c", "rec")
        .on_failure("uc", "rec")
        .step("d", "boom")
        .build()
    )
    store = MemoryStore(seed=1)
    runtime = Runtime(store, {"rec": record, "boom": boom}, workers=1)
    runtime.register(wf)
    instance_id = runtime.start_instance(wf.id, {})
    while runtime.run_once("w"):
        pass
    assert store.get_instance(instance_id).status is InstanceStatus.FAILED
    assert calls == ["a", "b", "c", "undo c", "undo b"]


# -- against brute force ------------------------------------------------------------------------


def _reach(wf: WorkflowDefinition, name: str) -> set[str]:
    """Plain reachability along next/parallel/else, written independently of graph.py."""
    seen: set[str] = set()
    todo = [name]
    while todo:
        step = wf.steps[todo.pop()]
        for nxt in [*step.next, *step.parallel, *([step.else_step] if step.else_step else [])]:
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def _brute_blocks(wf: WorkflowDefinition, name: str) -> list[tuple[str, str]]:
    """The (block, branch) pairs whose branch reaches `name`, smallest branch (innermost) first."""
    found: list[tuple[int, str, str]] = []
    for block in wf.steps.values():
        if block.type not in (StepType.FORK, StepType.PARALLEL):
            continue
        for start in block.parallel:
            members = {start, *_reach(wf, start)}
            if name in members:
                found.append((len(members), block.name, start))
    return [(b, s) for _, b, s in sorted(found)]


def _brute_savepoints(wf: WorkflowDefinition, name: str) -> list[str]:
    found = [
        (len(_reach(wf, sp.name)), sp.name)
        for sp in wf.steps.values()
        if sp.type is StepType.SAVE_POINT and name in _reach(wf, sp.name)
    ]
    return [sp for _, sp in sorted(found)]


@fast(150)
@given(flow_specs())
def test_graph_matches_brute_force_on_random_flows(
    generated: tuple[Any, WorkflowDefinition],
) -> None:
    _, wf = generated
    g = graph_of(wf)
    for name, step in wf.steps.items():
        assert set(g.successors(name)) == {
            *step.next,
            *step.parallel,
            *([step.else_step] if step.else_step else []),
        }
        assert g.descendants(name) == _reach(wf, name)
        assert [(b.name, s) for b, s in g.enclosing_blocks(name)] == _brute_blocks(wf, name)
        assert list(g.savepoints_above(name)) == _brute_savepoints(wf, name)
        expected_comp = wf.steps.get(step.on_failure) if step.on_failure else None
        assert g.compensation_of(name) == expected_comp
        if step.type in (StepType.FORK, StepType.PARALLEL):
            joins = [wf.steps[n] for n in step.next if wf.steps[n].type is StepType.JOIN]
            assert g.join_of(name) == (joins[0] if joins else None)
    assert g.cycles() == []
