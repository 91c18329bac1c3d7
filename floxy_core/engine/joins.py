"""Fork/parallel blocks and their joins: which branch a step is in, and when a join is ready."""

from __future__ import annotations

from floxy_core.engine.state import Transition
from floxy_core.graph import Block, graph_of
from floxy_core.model import (
    DEFAULT_PRIORITY,
    VIRTUAL_PREFIX,
    JoinState,
    JoinStrategy,
    StepDefinition,
    StepRecord,
)
from floxy_core.status import InstanceStatus, StepStatus


def create_join_state(tx: Transition, block: StepDefinition) -> None:
    join = graph_of(tx.definition).join_of(block.name)
    if join is None or join.name in tx.state.joins:
        return
    waiting = list(join.wait_for or block.parallel)
    tx.touch_join(JoinState(tx.instance.id, join.name, waiting, join.join_strategy))
    tx.event(
        "join_state_created",
        join_step=join.name,
        waiting_for=waiting,
        strategy=join.join_strategy.value,
    )


def _entry_for_branch(tx: Transition, state: JoinState, branch: str, block: str) -> str | None:
    """The first entry of `state.waiting_for` that stands for `branch` of `block`.

    Entries are only ever replaced by a step of their own branch or appended, so when the
    branch's entry of the initial list is still at its place it is the first one: no scan.
    """
    graph = graph_of(tx.definition)
    initial = graph.waiting_entry(block, branch)
    if initial is not None:
        index, entry = initial
        if index < len(state.waiting_for) and state.waiting_for[index] == entry:
            return entry
    for entry in state.waiting_for:
        name = entry.removeprefix(VIRTUAL_PREFIX)
        if name not in tx.definition.steps:
            continue
        found = graph.enclosing_block(name)
        if found is not None and found[0].name == block and found[1] == branch:
            return entry
    return None


def branch_finished(
    tx: Transition,
    row: StepRecord,
    *,
    success: bool,
    within: Block | None = None,
) -> bool:
    """Tell the join of a block that `row` ended one of its branches (the innermost block, or
    the one given in `within`). False when no join waits."""
    found = within or graph_of(tx.definition).enclosing_block(row.step_name)
    if found is None:
        return False
    block, branch = found
    join = graph_of(tx.definition).join_of(block.name)
    if join is None:
        return False
    state = tx.state.joins.get(join.name)
    if state is None:
        create_join_state(tx, block)
        state = tx.state.joins[join.name]
    entry = _entry_for_branch(tx, state, branch, block.name)
    if entry is None:
        state.waiting_for.append(row.step_name)
    elif entry != row.step_name:
        state.waiting_for[state.waiting_for.index(entry)] = row.step_name
    if row.step_name in state.completed or row.step_name in state.failed:
        return True
    (state.completed if success else state.failed).append(row.step_name)
    finished = set(state.completed) | set(state.failed)
    if state.strategy is JoinStrategy.ANY:
        ready = bool(state.completed) or finished >= set(state.waiting_for)
    else:
        ready = finished >= set(state.waiting_for)
    tx.event(
        "join_updated",
        join_step=join.name,
        completed_step=row.step_name,
        success=success,
        is_ready=ready,
    )
    tx.touch_join(state)
    if ready and not state.is_ready:
        state.is_ready = True
        if tx.instance.status in (InstanceStatus.RUNNING, InstanceStatus.DLQ):
            paused = tx.instance.status is InstanceStatus.DLQ
            tx.create_step(
                join.name, row.input, StepStatus.PAUSED if paused else StepStatus.PENDING
            )
            if not paused:
                tx.enqueue(join.name, 0, DEFAULT_PRIORITY)
            tx.event("join_ready", join_step=join.name)
    return True


def join_output(tx: Transition, state: JoinState) -> dict[str, object]:
    steps = tx.state.steps
    return {
        "completed": list(state.completed),
        "failed": list(state.failed),
        "strategy": state.strategy.value,
        "outputs": {name: steps[name].output for name in state.completed if name in steps},
        "status": "success",
    }
