"""Drive the engine deterministically: Python handlers, a fake clock, one worker, no threads."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from floxy_core.errors import HandlerError
from floxy_core.model import WorkflowDefinition
from floxy_core.ports import StepContext, Store
from floxy_core.runtime import Runtime
from floxy_core.status import InstanceStatus
from floxy_core.storage.memory import MemoryStore


class FakeClock:
    def __init__(self, start: float | None = None) -> None:
        self.t = time.time() if start is None else start

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.t += seconds


@dataclass
class Call:
    handler: str
    step: str
    input: Any
    retry_count: int
    compensation: bool
    key: str
    at: float


@dataclass
class Handlers:
    """Named Python handlers that record every call; `fail` maps a handler to its failures."""

    clock: FakeClock
    calls: list[Call] = field(default_factory=list)
    behaviour: dict[str, Callable[[StepContext, Any], Any]] = field(default_factory=dict)

    def add(self, name: str, fn: Callable[[StepContext, Any], Any] | None = None) -> None:
        self.behaviour[name] = fn or (lambda ctx, data: {**(data or {}), name: True})

    def failing(self, name: str, times: int = 10**9, retryable: bool = True) -> None:
        def fn(ctx: StepContext, data: Any) -> Any:
            done = sum(1 for c in self.calls if c.handler == name)
            if done <= times:
                raise HandlerError(f"{name} failed", retryable=retryable)
            return {**(data or {}), name: True}

        self.behaviour[name] = fn

    def order(self, compensation: bool | None = None) -> list[str]:
        return [
            c.step for c in self.calls if compensation is None or c.compensation == compensation
        ]


class _Recorded:
    """Looks its behaviour up at call time, so a test may change it after construction."""

    def __init__(self, name: str, owner: Handlers) -> None:
        self.name = name
        self.owner = owner

    def __call__(self, ctx: StepContext, data: Any) -> Any:
        self.owner.calls.append(
            Call(
                self.name,
                ctx.step_name,
                data,
                ctx.retry_count,
                ctx.compensation,
                ctx.idempotency_key,
                self.owner.clock.now(),
            )
        )
        return self.owner.behaviour[self.name](ctx, data)


@dataclass
class Harness:
    store: Store
    runtime: Runtime
    clock: FakeClock
    handlers: Handlers

    def start(self, definition: WorkflowDefinition, data: Any = None) -> int:
        self.runtime.register(definition)
        return self.runtime.start_instance(definition.id, {} if data is None else data)

    def drain(self, limit: int = 1000) -> None:
        """Process queue items until nothing is left, jumping the clock to the next due item."""
        for _ in range(limit):
            if self.runtime.run_once("w1"):
                continue
            due = self.store.next_due()
            if due is None:
                return
            self.clock.t = max(self.clock.t, due)
        raise AssertionError("engine did not settle")

    def run(self, definition: WorkflowDefinition, data: Any = None) -> int:
        instance_id = self.start(definition, data)
        self.drain()
        return instance_id

    def status(self, instance_id: int) -> InstanceStatus:
        return self.store.get_instance(instance_id).status

    def steps(self, instance_id: int) -> dict[str, Any]:
        return {s.step_name: s for s in self.store.get_steps(instance_id)}

    def events(self, instance_id: int, type_: str | None = None) -> list[Any]:
        return [e for e in self.store.get_events(instance_id) if type_ in (None, e.type)]


def harness(
    names: list[str], *, handlers: list[str] | None = None, store: Store | None = None
) -> Harness:
    clock = FakeClock()
    recorded = Handlers(clock)
    for name in names:
        recorded.add(name)
    store = store or MemoryStore(seed=7)
    table = {n: _Recorded(n, recorded) for n in (handlers if handlers is not None else names)}
    runtime = Runtime(store, table, clock=clock)
    return Harness(store, runtime, clock, recorded)
