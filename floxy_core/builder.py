"""Build workflow graphs from Python code; the YAML compiler drives the same builder.

The wiring follows the reference builder except where DECISIONS.md fixes it: the join of a
parallel block follows the parallel step (so rollback from after the join reaches the branch
tasks), a flow may start with a parallel block, and errors inside else branches are reported.

    wf = (
        Builder("order", version=2)
        .step("reserve", "reserve_h").on_failure("release", "release_h")
        .save_point("reserved")
        .parallel("notify", Task("email", "email_h"), Task("sms", "sms_h"))
        .step("ship", "ship_h")
        .build()
    )
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

from floxy_core.durations import MAX_DURATION_MS, MAX_RETRIES
from floxy_core.errors import DefinitionError
from floxy_core.graph import graph_of
from floxy_core.model import (
    DEFAULT_MAX_RETRIES,
    DEFAULT_PRIORITY,
    ROOT,
    VIRTUAL_PREFIX,
    JoinStrategy,
    RetryStrategy,
    StepDefinition,
    StepType,
    WorkflowDefinition,
    default_join_name,
)
from floxy_core.records import field, record, replace


@record(frozen=True)
class Options:
    """Per-step options; `None` means "use the builder's default"."""

    max_retries: int | None = None
    no_idempotent: bool = False
    delay_ms: int = 0
    retry_delay_ms: int = 0
    retry_strategy: RetryStrategy = RetryStrategy.FIXED
    retry_max_delay_ms: int | None = None
    retry_jitter: bool = False
    timeout_ms: int | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    priority: int = DEFAULT_PRIORITY


@record(frozen=True)
class Task:
    """A task inside a `parallel` block, optionally with its own compensation."""

    name: str
    handler: str | None = None
    options: Options = Options()
    on_failure: Compensation | None = None


@record(frozen=True)
class Compensation:
    name: str
    handler: str
    options: Options = Options()


class Builder:
    """Fluent construction of a `WorkflowDefinition` (methods mirror the reference builder)."""

    def __init__(
        self,
        name: str,
        *,
        version: int = 1,
        max_retries: int = DEFAULT_MAX_RETRIES,
        dlq: bool = False,
    ) -> None:
        self.name = name
        self.version = version
        self.default_max_retries = max_retries
        self.dlq = dlq
        self._steps: dict[str, StepDefinition] = {}
        self._order: list[str] = []
        self._start: str | None = None
        self._current: str | None = None
        self._errors: list[str] = []

    # -- linear steps ---------------------------------------------------------------------------

    def step(self, name: str, handler: str | None = None, options: Options = Options()) -> Builder:
        """A task that follows the current step; its handler defaults to its name."""
        max_retries = self._max_retries(options)
        self._link(self._task(name, handler or name, options, max_retries))
        return self

    then = step

    def on_failure(
        self, name: str, handler: str | None = None, options: Options = Options()
    ) -> Builder:
        """Compensation of the current step: runs when a later failure rolls the step back."""
        if self._current is None:
            self._errors.append(f"on_failure {name!r} called with no step")
            return self
        current = self._steps[self._current]
        if current.type is not StepType.TASK:
            self._errors.append(f"on_failure {name!r}: step {current.name!r} is not a task")
            return self
        self._add_compensation(Compensation(name, handler or name, options))
        self._steps[current.name] = replace(current, on_failure=name)
        return self

    def save_point(self, name: str) -> Builder:
        """A marker: a later failure rolls back only to here. Not inside a fork or parallel
        branch: a partial rollback of one of several concurrent branches has no clear meaning."""
        self._link(StepDefinition(name=name, type=StepType.SAVE_POINT))
        return self

    def wait_human_confirm(
        self,
        name: str,
        *,
        timeout_ms: int | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> Builder:
        """A step that waits for a human to confirm (continue) or reject (abort)."""
        self._link(
            StepDefinition(
                name=name,
                type=StepType.HUMAN,
                max_retries=0,
                timeout_ms=timeout_ms,
                metadata=MappingProxyType(dict(metadata or {})),
            )
        )
        return self

    # -- branching ------------------------------------------------------------------------------

    def parallel(self, name: str, *tasks: Task, join: str | None = None) -> Builder:
        """Run `tasks` at once, then continue after an automatic `all` join."""
        if len(tasks) < 2:
            self._errors.append(f"parallel {name!r} must contain at least 2 tasks")
            return self
        self._link(
            StepDefinition(name=name, type=StepType.PARALLEL, parallel=tuple(t.name for t in tasks))
        )
        for task in tasks:
            definition = self._task(
                task.name, task.handler or task.name, task.options, self._max_retries(task.options)
            )
            if task.on_failure is not None:
                self._add_compensation(task.on_failure)
                definition = replace(definition, on_failure=task.on_failure.name)
            self._add(replace(definition, prev=name))
        join_name = join or default_join_name(name)
        self._link(
            StepDefinition(
                name=join_name,
                type=StepType.JOIN,
                wait_for=tuple(t.name for t in tasks),
                join_strategy=JoinStrategy.ALL,
            )
        )
        return self

    def fork(self, name: str, *branches: Callable[[Builder], object]) -> Builder:
        """Run each branch (a function that adds steps to a sub-builder) at once."""
        if len(branches) < 2:
            self._errors.append(f"fork {name!r} needs at least 2 branches")
            return self
        starts: list[str] = []
        built: list[Builder] = []
        for index, fill in enumerate(branches):
            sub = Builder(name, version=self.version, max_retries=self.default_max_retries)
            fill(sub)
            if sub._start is None:
                self._errors.append(f"fork {name!r}: branch {index} has no steps")
                continue
            self._errors.extend(sub._errors)
            self._errors.extend(
                f"savepoint {s.name!r} is inside a branch of fork {name!r}: a savepoint may not "
                "be placed inside a fork or parallel branch"
                for s in sub._steps.values()
                if s.type is StepType.SAVE_POINT
            )
            starts.append(sub._start)
            built.append(sub)
        self._link(StepDefinition(name=name, type=StepType.FORK, parallel=tuple(starts)))
        for sub in built:
            self._merge(sub, name)
        return self

    def join(self, name: str, strategy: JoinStrategy | str = JoinStrategy.ALL) -> Builder:
        """Wait for the branches of the preceding fork (or parallel) block."""
        if self._current is None:
            self._errors.append(f"join {name!r} called with no step")
            return self
        current = self._steps[self._current]
        if current.type in (StepType.FORK, StepType.PARALLEL):
            wait_for = tuple(self._branch_terminal(start) for start in current.parallel)
        else:
            wait_for = (current.name,)
        self._link(
            StepDefinition(
                name=name,
                type=StepType.JOIN,
                wait_for=wait_for,
                join_strategy=JoinStrategy(strategy),
            )
        )
        return self

    def condition(
        self,
        name: str,
        expr: str,
        otherwise: Callable[[Builder], object] | None = None,
    ) -> Builder:
        """Branch on `expr`: the steps chained after it run when true, `otherwise` when false."""
        if not expr:
            self._errors.append(f"condition {name!r}: expr is required")
        self._link(StepDefinition(name=name, type=StepType.CONDITION, condition=expr))
        if otherwise is not None:
            sub = Builder(
                self.name,
                version=self.version,
                max_retries=self.default_max_retries,
            )
            otherwise(sub)
            self._errors.extend(f"condition {name!r} else branch: {e}" for e in sub._errors)
            if sub._start is None:
                self._errors.append(f"condition {name!r}: else branch has no steps")
            else:
                self._merge(sub, name)
                self._steps[name] = replace(self._steps[name], else_step=sub._start)
        return self

    # -- result ---------------------------------------------------------------------------------

    def build(self) -> WorkflowDefinition:
        if not self.name:
            self._errors.append("workflow name is required")
        if not 1 <= self.version <= 2**31 - 1:
            self._errors.append(f"workflow version must be 1..2147483647, got {self.version}")
        if self._start is None:
            self._errors.append(f"workflow {self.name!r}: at least one step is required")
        if self._errors:
            raise DefinitionError("; ".join(dict.fromkeys(self._errors)))
        assert self._start is not None
        definition = WorkflowDefinition(
            name=self.name,
            version=self.version,
            start=self._start,
            steps=MappingProxyType({n: self._steps[n] for n in self._order}),
            dlq_enabled=self.dlq,
        )
        validate_definition(definition)
        return definition

    # -- internals ------------------------------------------------------------------------------

    def _max_retries(self, options: Options) -> int:
        return self.default_max_retries if options.max_retries is None else options.max_retries

    def _task(self, name: str, handler: str, options: Options, max_retries: int) -> StepDefinition:
        return StepDefinition(
            name=name,
            type=StepType.TASK,
            handler=handler,
            max_retries=max_retries,
            metadata=MappingProxyType(dict(options.metadata)),
            no_idempotent=options.no_idempotent,
            delay_ms=options.delay_ms,
            retry_delay_ms=options.retry_delay_ms,
            retry_strategy=options.retry_strategy,
            retry_max_delay_ms=options.retry_max_delay_ms,
            retry_jitter=options.retry_jitter,
            timeout_ms=options.timeout_ms,
            priority=options.priority,
        )

    def _add_compensation(self, comp: Compensation) -> None:
        definition = replace(
            self._task(comp.name, comp.handler, comp.options, self._max_retries(comp.options)),
            compensation=True,
            prev="",
        )
        existing = self._steps.get(comp.name)
        if existing is not None:
            if existing.compensation and existing == definition:
                return
            what = "compensation" if existing.compensation else "step"
            self._errors.append(f"compensation {comp.name!r} shadows {what} {comp.name!r}")
            return
        self._steps[comp.name] = definition
        self._order.append(comp.name)

    def _merge(self, sub: Builder, parent: str) -> None:
        """Adopt a branch built by a sub-builder; its first step hangs off `parent`."""
        for step_name in sub._order:
            definition = sub._steps[step_name]
            if definition.compensation:
                existing = self._steps.get(step_name)
                if existing is not None and existing == definition:
                    continue
            if definition.name == sub._start:
                definition = replace(definition, prev=parent)
            self._add(definition)

    def _add(self, definition: StepDefinition) -> None:
        name = definition.name
        if not name:
            self._errors.append("step name is required")
            return
        if name == ROOT or name.startswith(VIRTUAL_PREFIX):
            self._errors.append(f"step name {name!r} is reserved")
            return
        if name in self._steps:
            self._errors.append(f"step {name!r} already exists")
            return
        self._steps[name] = definition
        self._order.append(name)

    def _link(self, definition: StepDefinition) -> None:
        """Append `definition` after the current step and make it current."""
        if definition.name in self._steps:
            self._errors.append(f"step {definition.name!r} already exists")
            return
        if self._current is None:
            self._add(replace(definition, prev=ROOT))
            if definition.name in self._steps and self._start is None:
                self._start = definition.name
        else:
            previous = self._steps[self._current]
            self._add(replace(definition, prev=previous.name))
            if definition.name not in self._steps:
                return
            self._steps[previous.name] = replace(previous, next=(*previous.next, definition.name))
        if definition.name in self._steps:
            self._current = definition.name

    def _branch_terminal(self, start: str) -> str:
        """The step a join waits for in one branch: its end, or a virtual entry if it branches."""
        name = start
        seen: set[str] = set()
        while name not in seen:
            seen.add(name)
            definition = self._steps[name]
            if definition.type is StepType.CONDITION:
                return VIRTUAL_PREFIX + name
            following = [n for n in definition.next if self._steps[n].type is not StepType.JOIN]
            joins = [n for n in definition.next if self._steps[n].type is StepType.JOIN]
            if definition.type in (StepType.FORK, StepType.PARALLEL) and joins:
                following = joins
            if not following:
                return name
            name = following[0]
        return name


def validate_definition(definition: WorkflowDefinition) -> None:
    """Reject graphs the engine cannot run: dangling references, missing handlers, cycles."""
    errors: list[str] = []
    steps = definition.steps
    if definition.start not in steps:
        errors.append(f"start step {definition.start!r} does not exist")
    for step in steps.values():
        refs = [
            *(("next", n) for n in step.next),
            *(("branch", n) for n in step.parallel),
            *(("wait_for", n) for n in step.wait_for if not n.startswith(VIRTUAL_PREFIX)),
        ]
        if step.else_step:
            refs.append(("else", step.else_step))
        if step.on_failure:
            refs.append(("on_failure", step.on_failure))
        errors.extend(
            f"step {step.name!r} references unknown {kind} step {ref!r}"
            for kind, ref in refs
            if ref not in steps
        )
        if step.type is StepType.TASK and not step.handler:
            errors.append(f"task step {step.name!r} must have a handler")
        errors.extend(_limit_errors(step))
    if not errors:
        _check_cycles(definition, errors)
    if errors:
        raise DefinitionError(f"workflow {definition.id}: " + "; ".join(errors))


def _limit_errors(step: StepDefinition) -> list[str]:
    """Values past the documented caps (the YAML loader reports them at their line first)."""
    errors = []
    if not 0 <= step.max_retries <= MAX_RETRIES:
        errors.append(f"step {step.name!r}: max_retries must be 0..{MAX_RETRIES}")
    for key, ms in (
        ("delay", step.delay_ms),
        ("retry_delay", step.retry_delay_ms),
        ("retry_max_delay", step.retry_max_delay_ms),
        ("timeout", step.timeout_ms),
    ):
        if ms is not None and not 0 <= ms <= MAX_DURATION_MS:
            errors.append(f"step {step.name!r}: {key} must be 0..{MAX_DURATION_MS} ms (30 days)")
    return errors


def _check_cycles(definition: WorkflowDefinition, errors: list[str]) -> None:
    errors.extend("cycle detected: " + " -> ".join(path) for path in graph_of(definition).cycles())
