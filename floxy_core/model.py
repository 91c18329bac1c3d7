"""Workflow definitions (immutable graphs) and the runtime records of their instances."""

from __future__ import annotations

import json
from collections.abc import Mapping
from enum import StrEnum
from types import MappingProxyType
from typing import Any

from floxy_core.errors import SpecError
from floxy_core.records import field, record
from floxy_core.status import InstanceStatus, StepStatus

JSON = Any
"""A decoded JSON value (dict, list, str, int, float, bool or None)."""

ROOT = "_root_"
"""The `prev` of a flow's first step (reference spelling)."""

VIRTUAL_PREFIX = "cond#"
"""Names starting with this are reserved for the engine's virtual join entries."""


def default_join_name(block: str) -> str:
    """The join a `parallel` gets, and a `fork` without `join.name` (DECISIONS.md)."""
    return f"{block}_join"


DEFAULT_MAX_RETRIES = 3
DEFAULT_PRIORITY = 50
RETRY_PRIORITY = 100
COMPENSATION_PRIORITY = 100
HUMAN_POLL_PRIORITY = 75


class StepType(StrEnum):
    TASK = "task"
    PARALLEL = "parallel"
    CONDITION = "condition"
    FORK = "fork"
    JOIN = "join"
    SAVE_POINT = "save_point"
    HUMAN = "human"


class RetryStrategy(StrEnum):
    FIXED = "fixed"
    LINEAR = "linear"
    EXPONENTIAL = "exponential"


class JoinStrategy(StrEnum):
    ALL = "all"
    ANY = "any"


def _frozen(mapping: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return MappingProxyType(dict(mapping or {}))


@record(frozen=True)
class StepDefinition:
    """One node of the graph. Field names follow the reference's definition JSON."""

    name: str
    type: StepType
    handler: str | None = None
    max_retries: int = 0
    next: tuple[str, ...] = ()
    prev: str = ROOT
    else_step: str | None = None
    on_failure: str | None = None
    condition: str | None = None
    parallel: tuple[str, ...] = ()
    wait_for: tuple[str, ...] = ()
    join_strategy: JoinStrategy = JoinStrategy.ALL
    metadata: Mapping[str, Any] = field(default_factory=lambda: _frozen(None))
    no_idempotent: bool = False
    delay_ms: int = 0
    retry_delay_ms: int = 0
    retry_strategy: RetryStrategy = RetryStrategy.FIXED
    retry_max_delay_ms: int | None = None
    retry_jitter: bool = False
    timeout_ms: int | None = None
    priority: int = DEFAULT_PRIORITY
    compensation: bool = False
    """True for the hidden steps that `on_failure` adds; they are never linked into the flow."""

    def to_json(self) -> dict[str, JSON]:
        out: dict[str, JSON] = {
            "name": self.name,
            "type": self.type.value,
            "handler": self.handler or "",
            "max_retries": self.max_retries,
            "prev": self.prev,
            "else": self.else_step or "",
            "on_failure": self.on_failure or "",
            "condition": self.condition or "",
            "parallel": list(self.parallel),
            "wait_for": list(self.wait_for),
            "join_strategy": self.join_strategy.value,
            "metadata": dict(self.metadata),
            "no_idempotent": self.no_idempotent,
            "delay": self.delay_ms,
            "retry_delay": self.retry_delay_ms,
            "retry_strategy": self.retry_strategy.value,
            "retry_max_delay": self.retry_max_delay_ms,
            "retry_jitter": self.retry_jitter,
            "timeout": self.timeout_ms,
            "priority": self.priority,
            "compensation": self.compensation,
        }
        if self.next:
            out["next"] = list(self.next)
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, JSON]) -> StepDefinition:
        compensation = bool(data.get("compensation", False))
        return cls(
            name=data["name"],
            type=StepType(data["type"]),
            handler=data.get("handler") or None,
            max_retries=int(data.get("max_retries", 0)),
            next=tuple(data.get("next") or ()),
            # Compensations hang off no step: their empty prev must survive a round trip, or the
            # definition read back from the store hashes differently from the one registered.
            prev=data.get("prev") or ("" if compensation else ROOT),
            else_step=data.get("else") or None,
            on_failure=data.get("on_failure") or None,
            condition=data.get("condition") or None,
            parallel=tuple(data.get("parallel") or ()),
            wait_for=tuple(data.get("wait_for") or ()),
            join_strategy=JoinStrategy(data.get("join_strategy") or "all"),
            metadata=_frozen(data.get("metadata")),
            no_idempotent=bool(data.get("no_idempotent", False)),
            delay_ms=int(data.get("delay") or 0),
            retry_delay_ms=int(data.get("retry_delay") or 0),
            retry_strategy=RetryStrategy(data.get("retry_strategy") or "fixed"),
            retry_max_delay_ms=data.get("retry_max_delay"),
            retry_jitter=bool(data.get("retry_jitter", False)),
            timeout_ms=data.get("timeout"),
            priority=int(data.get("priority", DEFAULT_PRIORITY)),
            compensation=compensation,
        )


@record(frozen=True)
class WorkflowDefinition:
    """An immutable, validated graph of steps; `id` is `<name>-v<version>` as in the reference."""

    name: str
    version: int
    start: str
    steps: Mapping[str, StepDefinition]
    dlq_enabled: bool = False

    @property
    def id(self) -> str:
        return f"{self.name}-v{self.version}"

    def step(self, name: str) -> StepDefinition:
        return self.steps[name]

    def to_json(self) -> dict[str, JSON]:
        return {
            "steps": {name: s.to_json() for name, s in self.steps.items()},
            "start": self.start,
            "dlq_enabled": self.dlq_enabled,
        }

    @classmethod
    def from_json(cls, name: str, version: int, data: Mapping[str, JSON]) -> WorkflowDefinition:
        steps = {n: StepDefinition.from_json(s) for n, s in data["steps"].items()}
        return cls(
            name=name,
            version=version,
            start=data["start"],
            steps=MappingProxyType(steps),
            dlq_enabled=bool(data.get("dlq_enabled", False)),
        )

    @property
    def content_hash(self) -> str:
        """Stable digest of the graph: the immutability rule compares definitions by it.

        The `exec` that the YAML compiler copies into step metadata is left out: where a handler
        lives (script path, URL) may differ between the daemons that share a flow.
        """
        import hashlib

        text = json.dumps(self._compared(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()

    def _compared(self) -> dict[str, Any]:
        """What the immutability rule compares: the graph, without the handlers' `exec`."""
        data: dict[str, Any] = self.to_json()
        for step in data["steps"].values():
            step["metadata"].pop("exec", None)
        return data

    def changes_from(self, old: WorkflowDefinition, limit: int = 5) -> list[str]:
        """What differs from `old` (registered under the same id), for the refusal message."""
        before, after = old._compared(), self._compared()
        changes: list[str] = []
        for key in ("start", "dlq_enabled"):
            if before[key] != after[key]:
                changes.append(f"{key} {_shown(before[key])} → {_shown(after[key])}")
        old_steps, new_steps = before["steps"], after["steps"]
        changes += [f"step {n} added" for n in new_steps if n not in old_steps]
        changes += [f"step {n} removed" for n in old_steps if n not in new_steps]
        for name in (n for n in new_steps if n in old_steps):
            was, now = old_steps[name], new_steps[name]
            for key in sorted(set(was) | set(now)):
                if was.get(key) != now.get(key):
                    changes.append(
                        f"step {name}: {key} {_shown(was.get(key))} → {_shown(now.get(key))}"
                    )
        if len(changes) > limit:
            changes[limit:] = [f"{len(changes) - limit} more"]
        return changes

    def conflict_message(self, old: WorkflowDefinition) -> str:
        changes = "; ".join(self.changes_from(old)) or "the graph differs"
        return (
            f"workflow {self.id} is already registered with different content ({changes}); "
            "bump `version` to register a changed flow"
        )


def _shown(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, sort_keys=True)
    return text if len(text) <= 60 else text[:57] + "..."


@record(frozen=True)
class TLSConfig:
    skip_verify: bool = False
    cert_file: str | None = None
    key_file: str | None = None
    ca_file: str | None = None


@record(frozen=True)
class HandlerSpec:
    """A declared handler. `type` is `bash`, `http` or a plugin's type name."""

    name: str
    type: str
    exec: str | None = None
    tls: TLSConfig | None = None
    config: Mapping[str, Any] = field(default_factory=lambda: _frozen(None))
    base_dir: str = "."
    """Directory of the YAML file: relative script paths are resolved against it."""
    where: tuple[int, int] = field(default=(1, 1), repr=False, compare=False)
    """1-based (line, column) of the declaration in its file, for error messages."""


@record(frozen=True)
class WorkflowFile:
    """Everything one YAML file declares."""

    path: str
    handlers: Mapping[str, HandlerSpec]
    flows: tuple[WorkflowDefinition, ...]
    tls: TLSConfig | None = None
    warnings: tuple[SpecError, ...] = ()
    """Problems that do not stop loading (e.g. handlers another worker must provide)."""

    def flow(self, name: str | None) -> WorkflowDefinition:
        """The flow called `name`, or the only flow when `name` is None."""
        from floxy_core.errors import InputError

        if name is None:
            if len(self.flows) == 1:
                return self.flows[0]
            names = ", ".join(f.name for f in self.flows)
            raise InputError(f"{self.path} defines several flows ({names}): choose one with --flow")
        for flow in self.flows:
            if flow.name == name or flow.id == name:
                return flow
        names = ", ".join(f.name for f in self.flows)
        raise InputError(f"{self.path} has no flow named {name!r} (flows: {names})")


# --- runtime records -------------------------------------------------------------------------


@record
class Instance:
    id: int
    workflow_id: str
    status: InstanceStatus
    input: JSON
    output: JSON = None
    error: str | None = None
    created_at: float = 0.0
    updated_at: float = 0.0
    started_at: float | None = None
    completed_at: float | None = None
    retry_of: int | None = None
    """The instance this one retries (`Runtime.retry`); set when it is created, never after."""


@record(frozen=True)
class ListedInstance:
    """An instance as `floxyctl status` lists it: `shown` is its status, or `waiting` while the
    human steps named in `waiting` wait for a decision."""

    instance: Instance
    shown: str
    waiting: tuple[str, ...] = ()


@record
class StepRecord:
    """One row per step name per instance; retries and compensation attempts reuse it."""

    id: int
    instance_id: int
    step_name: str
    step_type: StepType
    status: StepStatus
    input: JSON
    idempotency_key: str
    max_retries: int
    created_at: float
    output: JSON = None
    error: str | None = None
    retry_count: int = 0
    compensation_retry_count: int = 0
    started_at: float | None = None
    completed_at: float | None = None


@record
class QueueItem:
    id: int
    instance_id: int
    step_name: str
    scheduled_at: float
    priority: int
    attempted_at: float | None = None
    attempted_by: str | None = None
    lease_until: float | None = None


@record
class JoinState:
    instance_id: int
    join_step: str
    waiting_for: list[str]
    strategy: JoinStrategy
    completed: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    is_ready: bool = False


@record(frozen=True)
class Event:
    instance_id: int
    type: str
    step_name: str | None
    payload: Mapping[str, JSON]
    at: float
    id: int = 0


@record
class DLQRecord:
    id: int
    instance_id: int
    workflow_id: str
    step_name: str
    step_type: StepType
    input: JSON
    error: str | None
    reason: str
    created_at: float


@record(frozen=True)
class CallLog:
    """What one handler call printed (`floxy_core.capture`), kept with its step: one per call,
    each stream bounded to its tail behind a `[floxy: N earlier bytes cut]` line."""

    instance_id: int
    step_name: str
    """As in `StepContext`: for a compensation, the step being compensated."""
    handler: str
    retry_count: int
    """The attempt: 0 for the first call (of the step, or of its compensation)."""
    compensation: bool
    started_at: float
    ended_at: float
    outcome: str
    """`completed`, `failed`, or `refused`: the result came after the call's lease ran out and
    was not applied (another worker may have run the step again)."""
    stdout: str = ""
    stderr: str = ""
    truncated: bool = False
    exit_code: int | None = None
    """A script's exit status (negative: killed by that signal), an HTTP response's status."""
    id: int = 0
    """Rises with every log stored: `get_logs(after_id=...)` reads only newer ones."""


@record(frozen=True)
class CancelRequest:
    instance_id: int
    cancel_type: str
    """`cancel` (compensate) or `abort` (stop only)."""
    requested_by: str
    reason: str
    created_at: float = 0.0


@record(frozen=True)
class HumanDecision:
    instance_id: int
    step_name: str
    decision: str
    """`confirmed` or `rejected`."""
    decided_by: str
    comment: str | None = None
    decided_at: float = 0.0


PROJECT = "floxy"
"""pluggy's project name: the markers' name and the entry-point group."""


class LifecycleEvent(StrEnum):
    """A lifecycle event the engine fires after commit (`plugin_api.Event` to plugin
    authors, who implement `floxy_<value>`: `Event.STEP_FAILED.hook == "floxy_step_failed"`).
    The engine fires only these members; a test checks them against the hookspecs and against
    every event the engine fires, with its arguments."""

    WORKFLOW_STARTED = "workflow_started"
    WORKFLOW_COMPLETED = "workflow_completed"
    WORKFLOW_FAILED = "workflow_failed"
    WORKFLOW_CANCELLED = "workflow_cancelled"
    WORKFLOW_ABORTED = "workflow_aborted"
    WORKFLOW_PAUSED = "workflow_paused"
    WORKFLOW_RESUMED = "workflow_resumed"
    STEP_STARTED = "step_started"
    STEP_COMPLETED = "step_completed"
    STEP_FAILED = "step_failed"
    STEP_RETRIED = "step_retried"
    STEP_WAITING_DECISION = "step_waiting_decision"
    HUMAN_DECIDED = "human_decided"
    COMPENSATION_STARTED = "compensation_started"
    COMPENSATION_FINISHED = "compensation_finished"

    @property
    def hook(self) -> str:
        """The name of the hook a plugin implements for this event."""
        return f"{PROJECT}_{self.value}"
