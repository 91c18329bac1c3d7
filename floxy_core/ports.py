"""The ports the engine talks through: handlers, the clock, and the store."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from floxy_core.model import JSON


@dataclass(frozen=True)
class StepContext:
    """What a handler may know about the call it serves."""

    instance_id: int
    workflow_id: str
    step_name: str
    """For a compensation: the name of the step being compensated (reference behaviour)."""
    idempotency_key: str
    retry_count: int
    metadata: Mapping[str, Any] = field(default_factory=dict)
    compensation: bool = False
    timeout_s: float | None = None
    debug: bool = False
    interrupt: threading.Event = field(default_factory=threading.Event)
    """Set when the instance is cancelled or aborted: the handler should stop at once."""


@runtime_checkable
class Handler(Protocol):
    """Runs one step attempt. Returns the step output or raises `HandlerError`."""

    name: str

    def __call__(self, ctx: StepContext, data: JSON) -> JSON: ...


class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the epoch."""
        ...

    def sleep(self, seconds: float) -> None: ...
