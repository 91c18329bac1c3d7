"""The JSON document that describes one instance (`floxyctl run --output json`, `inspect`)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from floxy_core.model import DLQRecord, Event, Instance, StepRecord


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def instance_report(
    instance: Instance,
    steps: list[StepRecord],
    events: list[Event],
    dlq: list[DLQRecord],
    retried_as: list[int] | None = None,
) -> dict[str, Any]:
    """Stable shape documented in DECISIONS.md; steps in order of creation. `retried_as`: the
    instances that retry this one (a store read, so the caller brings it)."""
    return {
        "instance_id": instance.id,
        "workflow_id": instance.workflow_id,
        "status": instance.status.value,
        "input": instance.input,
        "output": instance.output,
        "error": instance.error,
        "steps": [
            {
                "name": s.step_name,
                "type": s.step_type.value,
                "status": s.status.value,
                "retry_count": s.retry_count,
                "compensation_retry_count": s.compensation_retry_count,
                "input": s.input,
                "output": s.output,
                "error": s.error,
                "started_at": iso(s.started_at),
                "completed_at": iso(s.completed_at),
            }
            for s in sorted(steps, key=lambda s: (s.created_at, s.id))
        ],
        "events": [
            {
                "type": e.type,
                "step": e.step_name,
                "payload": dict(e.payload),
                "at": iso(e.at),
            }
            for e in events
        ],
        "dlq": [
            {"id": d.id, "step": d.step_name, "error": d.error, "reason": d.reason} for d in dlq
        ],
        "retry_of": instance.retry_of,
        "retried_as": list(retried_as or []),
    }
