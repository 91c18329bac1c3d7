"""Property tests (hypothesis).

1. The YAML loader and the condition parser fail only with our own errors, whatever the text:
   arbitrary text, YAML-looking token soup, and mutations of the example workflow files.
2. Engine decisions keep the saga invariants on random flows (sequences, savepoints, on_failure,
   parallel blocks, forks with `all`/`any` joins, conditions, DLQ mode) and random per-attempt
   handler outcomes, driven deterministically on the in-memory store (one worker, a fake clock,
   as in tests/contract/harness.py), sometimes with a cancel in the middle.

Everything runs in well under a minute: example counts are kept small and deadlines are off.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from floxy_core.builder import Builder, Compensation, Options, Task
from floxy_core.conditions import evaluate_condition, parse_condition
from floxy_core.errors import ConditionError, FloxyError, HandlerError, ValidationError
from floxy_core.graph import graph_of
from floxy_core.model import JoinStrategy, WorkflowDefinition
from floxy_core.ports import StepContext
from floxy_core.runtime import Runtime
from floxy_core.spec.compiler import compile_document
from floxy_core.spec.loader import load_document
from floxy_core.status import InstanceStatus, StepStatus
from floxy_core.storage.memory import MemoryStore
from tests.contract.harness import FakeClock

EXAMPLES = sorted((Path(__file__).parents[2] / "examples" / "yaml").glob("*.yaml"))


def fast(examples: int) -> settings:
    """Few examples (the whole file stays well under a minute), no per-example deadline, and the
    same examples on every run (derandomized) so that CI results do not depend on luck."""
    return settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.too_slow],
    )


# ---------------------------------------------------------------------------------------------
# 1. Loader and condition parser: only our errors


YAML_TOKENS = [
    "flows:", "handlers:", "steps:", "tls:", "- ", "  ", "    ", "\n", "\n  ", "\n    - ",
    "name: a", "name: b", "handler: a", "exec: echo {}", "type: fork", "type: parallel",
    "type: condition", "type: savepoint", "type: human", "type: task", "branches:",
    "tasks:", "join:", "strategy: any", "on_failure: a", "expr: '{{ gt .x 1 }}'", "else:",
    "max_retries: -1", "max_retries: 3", "timeout: 2s", "delay: 1e309", "version: 0",
    "dlq: true", "{", "}", "[", "]", ",", ":", "? ", "&x ", "*x", "!!str ", "!!binary ",
    "!tag ", "|", ">", "'", '"', "#", "---", "...", "%YAML 1.2", "<<: *x", "~", "null",
    "\t", "\\", "\u00e9", "\ufeff", "\x00", "\x85", "{{", "}}", "cond#x", "_root_",
    "retry_strategy: exponential", "retry_delay: '10 s'", "priority: 101",
]  # fmt: skip


def _load(text: str) -> None:
    try:
        document = load_document(text, "<prop>", require_handlers=False)
    except ValidationError:
        return
    # A document that loads must compile, or fail with one of our errors.
    with contextlib.suppress(FloxyError):
        compile_document(document)


@fast(300)
@given(st.text(max_size=400))
def test_loader_on_arbitrary_text_raises_only_validation_error(text: str) -> None:
    _load(text)


@fast(300)
@given(st.lists(st.sampled_from(YAML_TOKENS), max_size=40))
def test_loader_on_yaml_token_soup_raises_only_validation_error(tokens: list[str]) -> None:
    _load("".join(tokens))


SCALARS = [
    "", "~", "null", "-1", "0", "1", "3.5", "1e309", "-0", "true", "no", "'x'", '"y"', "[]",
    "{}", "[a, b]", "{a: 1}", "*nope", "&a 1", "!!int x", "'{{ gt .x 1 }}'", "'{{'", "2s",
    "'10 s'", "cond#1", "_root_", "x" * 300, "\u00e9\u00e8", "|", ">-",
]  # fmt: skip
KEYS = [
    "name", "type", "handler", "exec", "steps", "flows", "branches", "tasks", "join", "else",
    "on_failure", "max_retries", "no_idempotent", "timeout", "delay", "priority", "expr",
    "condition", "version", "dlq", "unknown_key", "metadata", "strategy", "tls",
]  # fmt: skip


@st.composite
def mutated_example(draw: st.DrawFn) -> str:
    path = draw(st.sampled_from(EXAMPLES))
    lines = path.read_text().splitlines()
    for _ in range(draw(st.integers(1, 4))):
        if not lines:
            break
        i = draw(st.integers(0, len(lines) - 1))
        kind = draw(st.sampled_from(["delete", "duplicate", "scalar", "key", "indent", "swap"]))
        line = lines[i]
        indent = line[: len(line) - len(line.lstrip())]
        if kind == "delete":
            del lines[i]
        elif kind == "duplicate":
            lines.insert(i, line)
        elif kind == "scalar" and ":" in line:
            head = line.split(":", 1)[0]
            lines[i] = f"{head}: {draw(st.sampled_from(SCALARS))}"
        elif kind == "scalar":
            lines[i] = indent + "- " + draw(st.sampled_from(SCALARS))
        elif kind == "key":
            key = draw(st.sampled_from(KEYS))
            lines.insert(i, f"{indent}{key}: {draw(st.sampled_from(SCALARS))}")
        elif kind == "indent":
            lines[i] = draw(st.sampled_from(["", " ", "  ", "\t"])) + line.lstrip()
        else:
            j = draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
    return "\n".join(lines) + "\n"


@fast(250)
@given(mutated_example())
def test_loader_on_mutated_examples_raises_only_validation_error(text: str) -> None:
    _load(text)


@pytest.mark.parametrize("value", ["!!int x", "!!float x", "!!bool x", "!!int 0x"])
def test_an_explicit_tag_with_a_bad_value_is_a_validation_error(value: str) -> None:
    """The minimal cases the mutation property finds: ruamel's constructors raise ValueError,
    KeyError or IndexError for these, which must become a `file:line:col` ValidationError."""
    with pytest.raises(ValidationError) as caught:
        load_document(f"flows: {value}\n", "<tag>")
    assert "<tag>:1:" in str(caught.value)


def test_every_example_loads_unmutated() -> None:
    assert EXAMPLES
    for path in EXAMPLES:
        load_document(path.read_text(), str(path), require_handlers=False)


COND_TOKENS = [
    "{{", "}}", "{{-", "-}}", " ", ".", ".x", ".a.b", ".count", "gt", "lt", "eq", "ne", "ge",
    "le", "and", "or", "not", "len", "index", "print", "printf", "(", ")", "|", '"s"', "`r`",
    '"', "1", "-2", "3.5", "1e400", "0x1F", "nil", "true", "false", "$x", "if", "range",
    "/*", "*/", "\\", "\n", "\u00e9", ",", "'c'",
]  # fmt: skip
JSON_DATA = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=8,
)
FIELDS = st.dictionaries(st.sampled_from(["x", "a", "count", "b"]), JSON_DATA, max_size=4)


@fast(300)
@given(st.text(max_size=200), FIELDS)
def test_condition_parser_on_arbitrary_text_raises_only_condition_error(
    expr: str, data: dict[str, Any]
) -> None:
    try:
        condition = parse_condition(expr)
    except ConditionError:
        return
    with contextlib.suppress(ConditionError):
        condition.evaluate(data)


@fast(400)
@given(st.lists(st.sampled_from(COND_TOKENS), max_size=16), FIELDS)
def test_condition_parser_on_template_soup_raises_only_condition_error(
    tokens: list[str], data: dict[str, Any]
) -> None:
    with contextlib.suppress(ConditionError):
        evaluate_condition("".join(tokens), data)


# ---------------------------------------------------------------------------------------------
# 2. Engine decisions on random flows and random outcomes


@dataclass
class TaskSpec:
    name: str
    undo: bool
    no_idempotent: bool
    max_retries: int | None
    comp_retries: int
    in_any: bool


@dataclass
class FlowSpec:
    """A random flow, kept as plain data beside the definition it builds."""

    tasks: dict[str, TaskSpec] = field(default_factory=dict)
    savepoints: list[str] = field(default_factory=list)
    dlq: bool = False
    shape: list[Any] = field(default_factory=list)


@st.composite
def flow_specs(draw: st.DrawFn) -> tuple[FlowSpec, WorkflowDefinition]:
    spec = FlowSpec(dlq=draw(st.integers(0, 3)) == 0)
    counter = itertools.count(1)
    default_retries = draw(st.integers(0, 2))

    def task(in_any: bool) -> TaskSpec:
        t = TaskSpec(
            name=f"t{next(counter)}",
            undo=draw(st.booleans()),
            no_idempotent=draw(st.integers(0, 5)) == 0,
            max_retries=draw(st.none() | st.integers(0, 2)),
            comp_retries=draw(st.integers(0, 2)),
            in_any=in_any,
        )
        spec.tasks[t.name] = t
        return t

    def options(t: TaskSpec) -> Options:
        return Options(max_retries=t.max_retries, no_idempotent=t.no_idempotent)

    def comp(t: TaskSpec) -> Compensation | None:
        if not t.undo:
            return None
        return Compensation(f"undo_{t.name}", "h", Options(max_retries=t.comp_retries))

    def add_task(b: Builder, t: TaskSpec) -> None:
        b.step(t.name, "h", options(t))
        c = comp(t)
        if c is not None:
            b.on_failure(c.name, c.handler, c.options)

    def sequence(b: Builder, depth: int, top: bool, in_any: bool, length: int) -> list[Any]:
        shape: list[Any] = []
        for position in range(length):
            kinds = ["task", "task", "task"]
            if depth < 2:
                kinds += ["parallel", "fork", "condition"]
            if top and position > 0:
                kinds.append("savepoint")
            kind = draw(st.sampled_from(kinds))
            if kind == "task":
                t = task(in_any)
                add_task(b, t)
                shape.append(t.name)
            elif kind == "savepoint":
                name = f"sp{next(counter)}"
                b.save_point(name)
                spec.savepoints.append(name)
                shape.append(("savepoint", name))
            elif kind == "parallel":
                name = f"par{next(counter)}"
                members = [task(in_any) for _ in range(draw(st.integers(2, 3)))]
                b.parallel(
                    name,
                    *(Task(m.name, "h", options(m), on_failure=comp(m)) for m in members),
                )
                shape.append(("parallel", name, [m.name for m in members]))
            elif kind == "fork":
                name = f"fork{next(counter)}"
                strategy = draw(st.sampled_from([JoinStrategy.ALL, JoinStrategy.ANY]))
                branches: list[list[Any]] = []

                inner_any = in_any or strategy is JoinStrategy.ANY

                def fill(sub: Builder, branch: list[Any], inner_any: bool = inner_any) -> None:
                    size = draw(st.integers(1, 2))
                    branch.extend(sequence(sub, depth + 1, False, inner_any, size))

                fillers = []
                for _ in range(draw(st.integers(2, 3))):
                    branch: list[Any] = []
                    branches.append(branch)
                    fillers.append(lambda sub, br=branch: fill(sub, br))
                b.fork(name, *fillers)
                b.join(f"{name}_join", strategy)
                shape.append(("fork", name, strategy.value, branches))
            else:
                name = f"cond{next(counter)}"
                value = draw(st.booleans())
                otherwise = None
                else_shape: list[Any] = []
                if draw(st.booleans()):

                    def otherwise(sub: Builder, out: list[Any] = else_shape) -> None:
                        out.extend(sequence(sub, depth + 1, False, in_any, draw(st.integers(1, 2))))

                b.condition(name, "true" if value else "false", otherwise)
                shape.append(("condition", name, value, else_shape))
                # The steps chained after a condition are its true branch; stop or go on.
        return shape

    builder = Builder("prop", max_retries=default_retries, dlq=spec.dlq)
    spec.shape = sequence(builder, 0, True, False, draw(st.integers(1, 5)))
    try:
        definition = builder.build()
    except FloxyError as exc:  # e.g. a fork whose branch starts with a savepoint: not generated
        raise AssertionError(f"generated an invalid flow: {exc}") from exc
    return spec, definition


@dataclass
class Call:
    step: str
    compensation: bool
    attempt: int
    ok: bool
    status: InstanceStatus


@dataclass
class Plan:
    """Per-attempt outcomes: attempt i of a step fails when i < fails[step]."""

    fails: dict[str, int]
    comp_fails: dict[str, int]
    fatal: set[str]
    """Steps whose failures are not retryable."""


@st.composite
def plans(draw: st.DrawFn, spec: FlowSpec) -> Plan:
    counts = st.sampled_from([0, 0, 0, 0, 1, 2, 9])
    return Plan(
        fails={n: draw(counts) for n in spec.tasks},
        comp_fails={n: draw(st.sampled_from([0, 0, 0, 1, 9])) for n in spec.tasks},
        fatal={n for n in spec.tasks if draw(st.integers(0, 7)) == 0},
    )


@dataclass
class Run:
    spec: FlowSpec
    definition: WorkflowDefinition
    plan: Plan
    store: MemoryStore
    instance_id: int
    calls: list[Call]
    cancelled_at: int | None
    """Index in `calls` at which a cancel was accepted (None: no cancel)."""
    completed_before_cancel: list[str]
    """Task calls made before the cancel (a step whose handler started is compensated)."""

    @property
    def status(self) -> InstanceStatus:
        return self.store.get_instance(self.instance_id).status

    def rows(self) -> dict[str, Any]:
        return {r.step_name: r for r in self.store.get_steps(self.instance_id)}

    def queue(self) -> list[Any]:
        # The in-memory store has no public queue listing; its state is what the engine sees.
        return list(self.store._states[self.instance_id].queue)


def drive(
    spec: FlowSpec, definition: WorkflowDefinition, plan: Plan, cancel_after: int | None
) -> Run:
    clock = FakeClock(start=1_700_000_000.0)
    store = MemoryStore(seed=7)
    calls: list[Call] = []
    instance: dict[str, int] = {}

    def handler(ctx: StepContext, data: Any) -> Any:
        attempt = sum(
            1 for c in calls if c.step == ctx.step_name and c.compensation == ctx.compensation
        )
        fails = (plan.comp_fails if ctx.compensation else plan.fails).get(ctx.step_name, 0)
        ok = attempt >= fails
        status = store.get_instance(ctx.instance_id).status
        calls.append(Call(ctx.step_name, ctx.compensation, attempt, ok, status))
        if not ok:
            retryable = ctx.compensation or ctx.step_name not in plan.fatal
            raise HandlerError(f"boom {ctx.step_name} {attempt}", retryable=retryable)
        return {**(data if isinstance(data, dict) else {}), ctx.step_name: attempt}

    handler.name = "h"  # type: ignore[attr-defined]
    runtime = Runtime(store, {"h": handler}, clock=clock)
    runtime.register(definition)
    instance["id"] = runtime.start_instance(definition.id, {"x": 1})
    iid = instance["id"]
    cancelled_at: int | None = None
    completed_before: list[str] = []
    for step in range(3000):
        if (
            step == cancel_after
            and cancelled_at is None
            and store.get_instance(iid).status is InstanceStatus.RUNNING
        ):
            completed_before = [c.step for c in calls if not c.compensation]
            runtime.cancel(iid, "prop", "random cancel")
            cancelled_at = len(calls)
        if runtime.run_once("w1"):
            continue
        due = store.next_due()
        if due is None:
            break
        clock.t = max(clock.t, due)
    else:
        raise AssertionError("the engine did not settle")
    return Run(spec, definition, plan, store, iid, calls, cancelled_at, completed_before)


@st.composite
def runs(draw: st.DrawFn) -> Run:
    spec, definition = draw(flow_specs())
    plan = draw(plans(spec))
    cancel_after = draw(st.none() | st.none() | st.integers(0, 12))
    return drive(spec, definition, plan, cancel_after)


def _effective_retries(spec: FlowSpec, definition: WorkflowDefinition, name: str) -> int:
    return definition.steps[name].max_retries


def broken(run: Run, name: str) -> bool:
    """Whether task `name` fails for good under the plan (no crash, no cancel)."""
    t, fails = run.spec.tasks[name], run.plan.fails.get(name, 0)
    if fails == 0:
        return False
    return (
        t.no_idempotent or name in run.plan.fatal or fails > run.definition.steps[name].max_retries
    )


def passes(run: Run, sequence: list[Any]) -> bool:
    """Whether a sequence of the flow's shape succeeds: `all` blocks need every branch, an `any`
    join one branch (in DLQ mode any failure pauses the instance, so `any` counts as `all`)."""
    for item in sequence:
        if isinstance(item, str):
            if broken(run, item):
                return False
        elif item[0] == "parallel":
            if any(broken(run, m) for m in item[2]):
                return False
        elif item[0] == "fork":
            results = [passes(run, branch) for branch in item[3]]
            need_all = item[2] == "all" or run.spec.dlq
            if not (all(results) if need_all else any(results)):
                return False
        elif item[0] == "condition" and not item[2]:
            return passes(run, item[3])
    return True


def expected_status(run: Run) -> InstanceStatus:
    if passes(run, run.spec.shape):
        return InstanceStatus.COMPLETED
    return InstanceStatus.DLQ if run.spec.dlq else InstanceStatus.FAILED


def _last_completed_savepoint(run: Run) -> str | None:
    rows = run.rows()
    done = [
        (rows[sp].completed_at or 0.0, rows[sp].id, sp)
        for sp in run.spec.savepoints
        if sp in rows and rows[sp].status is StepStatus.COMPLETED
    ]
    return max(done)[2] if done else None


def _grouped(names: list[str]) -> list[str]:
    return [name for name, _ in itertools.groupby(names)]


def _by_last_call(names: list[str]) -> list[str]:
    """Each step once, in the order of its last call (when its call ended for good)."""
    last = {name: i for i, name in enumerate(names)}
    return sorted(last, key=last.__getitem__)


def _check_rollback_order(got: list[str], expected: list[str], completed: set[str]) -> None:
    """Every started step is compensated once; completed ones newest first. (A step that failed
    in an `any` branch ends at the same fake instant as others, so its place is not checked.)"""
    assert sorted(got) == sorted(expected), (got, expected)
    assert [n for n in got if n in completed] == [n for n in expected if n in completed]


def check_engine_invariants(run: Run) -> None:
    status = run.status
    rows = run.rows()
    spec, definition, plan = run.spec, run.definition, run.plan
    task_calls = [c for c in run.calls if not c.compensation]
    comp_calls = [c for c in run.calls if c.compensation]
    described = f"status {status}; calls {[(c.step, c.compensation, c.ok) for c in run.calls]}"

    # Terminal or visibly paused; nothing queued, nothing active for a terminal instance.
    assert status.terminal or status is InstanceStatus.DLQ, described
    # The outcome follows from the flow and the plan (unless it was cancelled).
    if run.cancelled_at is None:
        assert status is expected_status(run), f"expected {expected_status(run)}; {described}"
    if status.terminal:
        assert not run.queue(), described
        active = [
            n for n, r in rows.items() if r.status in (StepStatus.RUNNING, StepStatus.PENDING)
        ]
        assert not active, described
    # No handler runs for a terminal instance.
    assert all(not c.status.terminal for c in run.calls), described
    # no_idempotent: one call at most.
    for name, t in spec.tasks.items():
        if t.no_idempotent:
            assert sum(1 for c in task_calls if c.step == name) <= 1, described
    # Retries bounded by max_retries (N + 1 calls), and a success is final.
    for name in spec.tasks:
        calls = [c for c in task_calls if c.step == name]
        assert len(calls) <= _effective_retries(spec, definition, name) + 1, described
        assert sum(c.ok for c in calls) <= 1, described
        assert all(not c.ok for c in calls[:-1]), described

    if status is InstanceStatus.COMPLETED:
        assert not comp_calls, described
        for name, t in spec.tasks.items():
            row = rows.get(name)
            if row is None:
                continue  # a condition branch that did not run
            if row.status in (StepStatus.FAILED, StepStatus.SKIPPED):
                # a failed branch of an `any` block: its step failed, what followed was stopped
                assert t.in_any, f"{name} {row.status} in a completed instance; {described}"
                assert row.status is StepStatus.FAILED or not any(
                    c.step == name for c in task_calls
                ), described
            else:
                assert row.status is StepStatus.COMPLETED, f"{name}: {row.status}; {described}"
                assert [c.ok for c in task_calls if c.step == name][-1:] == [True], described
        return

    if status is InstanceStatus.DLQ:
        assert not comp_calls, described
        assert run.store.get_dlq(run.instance_id), described
        return

    if status is InstanceStatus.CANCELLED:
        assert run.cancelled_at is not None, described
        # Nothing but compensations after the cancel; every completed step undone, newest first.
        assert all(c.compensation for c in run.calls[run.cancelled_at :]), described
        started = _by_last_call(run.completed_before_cancel)
        expected = [n for n in reversed(started) if spec.tasks[n].undo]
        done = {c.step for c in run.calls[: run.cancelled_at] if c.ok and not c.compensation}
        _check_rollback_order(_grouped([c.step for c in comp_calls]), expected, done)
    else:
        assert status is InstanceStatus.FAILED, described
        assert run.cancelled_at is None, described
        error = run.store.get_instance(run.instance_id).error or ""
        trigger = error.split()[1] if error.startswith("boom ") else None
        first_comp = next((i for i, c in enumerate(run.calls) if c.compensation), len(run.calls))
        # After the rollback starts, no step runs.
        assert all(c.compensation for c in run.calls[first_comp:]), described
        completed = [c.step for c in task_calls if c.ok]
        started = _by_last_call([c.step for c in task_calls])
        savepoint = _last_completed_savepoint(run)
        scope = graph_of(definition).descendants(savepoint) if savepoint else set(definition.steps)
        expected = [n for n in reversed(started) if spec.tasks[n].undo and n in scope]
        got = _grouped([c.step for c in comp_calls])
        if trigger is not None and spec.tasks[trigger].undo:
            expected = [trigger, *(n for n in expected if n != trigger)]
            assert got[:1] == [trigger], described
        _check_rollback_order(got, expected, set(completed))
        # Steps before the savepoint keep their effects.
        for name in completed:
            if name not in scope:
                assert rows[name].status is StepStatus.COMPLETED, described
    # Each compensation: called until it succeeds or runs out of its own retries.
    for name in _grouped([c.step for c in comp_calls]):
        calls = [c for c in comp_calls if c.step == name]
        fails = plan.comp_fails.get(name, 0)
        limit = spec.tasks[name].comp_retries + 1
        assert len(calls) == min(fails + 1, limit), f"{name}: {described}"
        row = rows[name]
        if fails < limit:
            assert row.status is StepStatus.ROLLED_BACK, f"{name}: {row.status}; {described}"
        else:
            assert row.status is StepStatus.FAILED, f"{name}: {row.status}; {described}"
            reasons = {(d.step_name, d.reason) for d in run.store.get_dlq(run.instance_id)}
            assert (name, "compensation max retries exceeded") in reasons, described


@fast(200)
@given(runs())
def test_engine_keeps_the_saga_invariants_on_random_flows_and_outcomes(run: Run) -> None:
    check_engine_invariants(run)
    # Driving an instance that has settled runs nothing more.
    before = len(run.calls)
    runtime = Runtime(run.store, {}, clock=FakeClock(start=1_800_000_000.0))
    while runtime.run_once("late"):
        pass
    assert len(run.calls) == before


COMP_REASONS = ("compensation_success", "rolled_back_no_compensation")


def missing_events(run: Run) -> list[str]:
    """Step and instance states without the event that records the change."""
    events = run.store.get_events(run.instance_id)
    status = run.status

    def has(
        type_: str, step: str | None, test: Callable[[dict[str, Any]], bool] = lambda p: True
    ) -> bool:
        return any(
            e.type == type_ and (step is None or e.step_name == step) and test(dict(e.payload))
            for e in events
        )

    missing = []
    if status.terminal and not has(f"workflow_{status.value}", None):
        missing.append(f"instance {status} without workflow_{status.value}")
    ends = [
        e.type
        for e in events
        if e.type in {f"workflow_{s}" for s in ("completed", "failed", "cancelled", "aborted")}
    ]
    if len(ends) > 1:
        missing.append(f"several terminal events {ends}")
    for row in run.store.get_steps(run.instance_id):
        st_ = row.status
        if st_ is StepStatus.COMPLETED:
            ok = has("step_completed", row.step_name, lambda p: p.get("reason") not in COMP_REASONS)
        elif st_ in (StepStatus.FAILED, StepStatus.SKIPPED):
            ok = has("step_failed", row.step_name)
        elif st_ is StepStatus.ROLLED_BACK:
            ok = has("step_completed", row.step_name, lambda p: p.get("reason") in COMP_REASONS)
        else:
            ok = True
        if not ok:
            missing.append(f"step {row.step_name} ({row.step_type}) is {st_} without its event")
        plain = sum(
            1 for e in events
            if e.type == "step_completed" and e.step_name == row.step_name
            and e.payload.get("reason") not in COMP_REASONS
        )  # fmt: skip
        if plain > 1:
            missing.append(f"step {row.step_name} completed {plain} times")
    return missing


@fast(150)
@given(runs())
def test_every_state_change_has_its_event(run: Run) -> None:
    missing = missing_events(run)
    calls = [(c.step, c.compensation, c.ok) for c in run.calls]
    assert not missing, f"{missing}; status {run.status}; calls {calls}"


def test_a_failed_step_without_on_failure_records_its_rollback() -> None:
    """The minimal case the property above finds: the failing step itself has no on_failure."""
    definition = Builder("lone", max_retries=0).step("a", "h").build()
    spec = FlowSpec(tasks={"a": TaskSpec("a", False, False, None, 0, False)})
    run = drive(spec, definition, Plan({"a": 1}, {}, set()), None)
    assert run.status is InstanceStatus.FAILED
    assert run.rows()["a"].status is StepStatus.ROLLED_BACK
    assert missing_events(run) == []


def test_a_failed_block_inside_an_any_branch_fails_only_that_branch() -> None:
    """Found by the engine property with more examples: a parallel block inside a branch of an
    `any` fork. Its failure must fail that branch only; the other branch succeeded, so the join
    goes on (DECISIONS.md: an `any` join fails only when all branches failed)."""
    b = Builder("nested_any", max_retries=0)
    b.fork(
        "f",
        lambda s: s.parallel("par", Task("p1", "h"), Task("p2", "h")),
        lambda s: s.step("other", "h"),
    )
    b.join("f_join", JoinStrategy.ANY)
    b.step("after", "h")
    definition = b.build()
    spec = FlowSpec(
        tasks={
            n: TaskSpec(n, False, False, None, 0, n != "after")
            for n in ("p1", "p2", "other", "after")
        },
        shape=[("fork", "f", "any", [[("parallel", "par", ["p1", "p2"])], ["other"]]), "after"],
    )
    run = drive(spec, definition, Plan({"p1": 1}, {}, set()), None)
    rows = {n: r.status for n, r in run.rows().items()}
    assert run.status is InstanceStatus.COMPLETED, f"{run.status}: {rows}"
    assert rows["other"] is StepStatus.COMPLETED and rows["after"] is StepStatus.COMPLETED
