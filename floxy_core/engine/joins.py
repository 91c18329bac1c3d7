"""Fork/parallel blocks and their joins: which branch a step is in, and when a join is ready."""

from __future__ import annotations

from floxy_core.builder import join_of
from floxy_core.engine.state import Transition
from floxy_core.model import (
    DEFAULT_PRIORITY,
    ROOT,
    VIRTUAL_PREFIX,
    JoinState,
    JoinStrategy,
    StepDefinition,
    StepRecord,
    StepType,
    WorkflowDefinition,
)
from floxy_core.status import InstanceStatus, StepStatus

_BLOCKS = (StepType.FORK, StepType.PARALLEL)


def enclosing_block(definition: WorkflowDefinition, name: str) -> tuple[StepDefinition, str] | None:
    """The innermost fork/parallel step whose branches contain `name`, and that branch's start."""
    current = name
    for _ in range(len(definition.steps) + 1):
        step = definition.steps[current]
        parent_name = step.prev
        if not parent_name or parent_name == ROOT:
            return None
        parent = definition.steps[parent_name]
        if parent.type in _BLOCKS and current in parent.parallel:
            return parent, current
        current = parent_name
    return None


def enclosing_blocks(definition: WorkflowDefinition, name: str) -> list[tuple[StepDefinition, str]]:
    """Every block around `name` with the branch it is in, innermost first."""
    chain: list[tuple[StepDefinition, str]] = []
    current = name
    while (found := enclosing_block(definition, current)) is not None:
        chain.append(found)
        current = found[0].name
    return chain


def block_steps(definition: WorkflowDefinition, block: StepDefinition) -> set[str]:
    """Every step inside the branches of `block` (nested blocks included)."""
    inside: set[str] = set()
    for name in definition.steps:
        current: str | None = name
        while current is not None:
            found = enclosing_block(definition, current)
            if found is None:
                break
            if found[0].name == block.name:
                inside.add(name)
                break
            current = found[0].name
    return inside


def create_join_state(tx: Transition, block: StepDefinition) -> None:
    join = join_of(tx.definition, block)
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
    for entry in state.waiting_for:
        name = entry.removeprefix(VIRTUAL_PREFIX)
        if name not in tx.definition.steps:
            continue
        found = enclosing_block(tx.definition, name)
        if found is not None and found[0].name == block and found[1] == branch:
            return entry
    return None


def branch_finished(
    tx: Transition,
    row: StepRecord,
    *,
    success: bool,
    within: tuple[StepDefinition, str] | None = None,
) -> bool:
    """Tell the join of a block that `row` ended one of its branches (the innermost block, or
    the one given in `within`). False when no join waits."""
    found = within or enclosing_block(tx.definition, row.step_name)
    if found is None:
        return False
    block, branch = found
    join = join_of(tx.definition, block)
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
