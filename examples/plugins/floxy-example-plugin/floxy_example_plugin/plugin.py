"""The hooks floxy finds through the entry point `example` (group `floxy`).

* `type: template` handlers: each key of `fields` becomes an output field, filled from the step
  input with `str.format` syntax (`"Hello, {name}!"`, `"{order[id]}"`, `"{total:.2f}"`).
* An audit log: with `FLOXY_AUDIT_LOG=/path/audit.jsonl` set, every lifecycle event appends one
  JSON line to that file, from whichever process fired it (`floxyctl`, `floxyd`).
"""

from __future__ import annotations

import json
import os
import string
import threading
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from floxy_core.errors import HandlerError
from floxy_core.handlers.registry import BuildContext
from floxy_core.model import JSON, HandlerSpec, Instance
from floxy_core.plugins import HandlerType, hookimpl
from floxy_core.ports import StepContext

floxy_priority = 50
"""The default: built-ins have 0, so a plugin's hooks run before theirs."""

AUDIT_ENV = "FLOXY_AUDIT_LOG"

# --- the `template` handler type ----------------------------------------------------------------

TEMPLATE_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["fields"],
    "properties": {
        "fields": {
            "description": "Output field -> str.format template over the step input.",
            "type": "object",
            "minProperties": 1,
            "additionalProperties": {"type": "string"},
        },
        "merge": {
            "description": "true (default): output = input + fields; false: only the fields.",
            "type": "boolean",
        },
        "description": {"type": "string"},
    },
    "additionalProperties": False,
}


class _Formatter(string.Formatter):
    """`str.format` without attribute access: `{a.__class__}` could reach any object."""

    def get_field(self, field_name: str, args: Any, kwargs: Any) -> Any:
        _check_field(field_name)
        return super().get_field(field_name, args, kwargs)


def _check_field(field_name: str) -> None:
    first = field_name.split("[", 1)[0]
    if "." in first or not first or first.isdigit():
        raise ValueError(
            f"{{{field_name}}}: use a field name and [keys], e.g. {{order[id]}} "
            "(no attributes, no positional fields)"
        )


def _parse(template: str) -> None:
    """Reject a template that can never work, when the handler is built."""
    for _, field_name, _, _ in _Formatter().parse(template):  # raises ValueError on bad syntax
        if field_name is not None:
            _check_field(field_name)


class TemplateHandler:
    """Fills each template from the input; thread-safe (no state changes after construction)."""

    def __init__(self, name: str, fields: Mapping[str, str], *, merge: bool = True) -> None:
        self.name = name  # the Handler protocol needs it
        self.fields = dict(fields)
        self.merge = merge
        for key, template in self.fields.items():
            try:
                _parse(template)
            except ValueError as exc:
                raise ValueError(f"fields.{key}: {exc}") from None

    def __call__(self, ctx: StepContext, data: JSON) -> JSON:
        if not isinstance(data, dict):
            raise HandlerError(
                f"template handler {self.name!r} needs a JSON object as input, got "
                f"{type(data).__name__}",
                retryable=False,  # the same input fails the same way every time
            )
        formatter = _Formatter()
        out: dict[str, Any] = dict(data) if self.merge else {}
        for key, template in self.fields.items():
            try:
                out[key] = formatter.vformat(template, (), data)
            except (KeyError, IndexError) as exc:
                raise HandlerError(
                    f"fields.{key}: the input has no {exc}", retryable=False
                ) from None
            except (TypeError, ValueError) as exc:
                raise HandlerError(f"fields.{key}: {exc}", retryable=False) from None
        return out


def build_template(spec: HandlerSpec, ctx: BuildContext) -> TemplateHandler:
    """`spec.config` holds the handler's own keys, already checked by TEMPLATE_SCHEMA."""
    return TemplateHandler(
        spec.name, spec.config["fields"], merge=bool(spec.config.get("merge", True))
    )


@hookimpl
def floxy_handler_types() -> list[HandlerType]:
    return [
        HandlerType(
            "template",
            build_template,
            schema=TEMPLATE_SCHEMA,
            description="fill output fields from str.format templates over the step input",
        )
    ]


# --- the audit log -------------------------------------------------------------------------------

_lock = threading.Lock()


def _audit(event: str, instance: Instance, **fields: Any) -> None:
    """Append one JSON line; does nothing unless FLOXY_AUDIT_LOG is set.

    An OSError (unwritable path...) propagates: floxy logs it, counts it and carries on.
    Outputs and inputs are not logged: they may hold personal data.
    """
    path = os.environ.get(AUDIT_ENV)
    if not path:
        return
    record = {
        "at": datetime.now(UTC).isoformat(timespec="milliseconds"),
        "event": event,
        "instance_id": instance.id,
        "workflow_id": instance.workflow_id,
        "status": instance.status.value,
        **fields,
        "pid": os.getpid(),
    }
    line = (json.dumps(record, ensure_ascii=False, default=str) + "\n").encode("utf-8")
    # One write() on an O_APPEND file: lines from several processes do not interleave.
    with _lock:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)


@hookimpl
def floxy_workflow_started(instance: Instance) -> None:
    _audit("workflow_started", instance)


@hookimpl
def floxy_workflow_completed(instance: Instance) -> None:
    _audit("workflow_completed", instance)


@hookimpl
def floxy_workflow_failed(instance: Instance, error: str | None) -> None:
    _audit("workflow_failed", instance, error=error)


@hookimpl
def floxy_workflow_cancelled(instance: Instance, error: str | None) -> None:
    _audit("workflow_cancelled", instance, error=error)


@hookimpl
def floxy_workflow_aborted(instance: Instance, error: str | None) -> None:
    _audit("workflow_aborted", instance, error=error)


@hookimpl
def floxy_workflow_paused(instance: Instance, error: str | None) -> None:
    _audit("workflow_paused", instance, error=error)


@hookimpl
def floxy_workflow_resumed(instance: Instance, step_name: str) -> None:
    _audit("workflow_resumed", instance, step=step_name)


@hookimpl
def floxy_step_started(instance: Instance, step_name: str, retry_count: int) -> None:
    _audit("step_started", instance, step=step_name, retry_count=retry_count)


@hookimpl
def floxy_step_completed(instance: Instance, step_name: str) -> None:
    _audit("step_completed", instance, step=step_name)


@hookimpl
def floxy_step_failed(instance: Instance, step_name: str, error: str) -> None:
    _audit("step_failed", instance, step=step_name, error=error)


@hookimpl
def floxy_step_retried(instance: Instance, step_name: str, retry_count: int, error: str) -> None:
    _audit("step_retried", instance, step=step_name, retry_count=retry_count, error=error)


@hookimpl
def floxy_step_waiting_decision(instance: Instance, step_name: str) -> None:
    _audit("step_waiting_decision", instance, step=step_name)


@hookimpl
def floxy_human_decided(instance: Instance, step_name: str, decision: str, decided_by: str) -> None:
    _audit("human_decided", instance, step=step_name, decision=decision, decided_by=decided_by)


@hookimpl
def floxy_compensation_started(
    instance: Instance, step_name: str, compensation: str | None
) -> None:
    _audit("compensation_started", instance, step=step_name, compensation=compensation)


@hookimpl
def floxy_compensation_finished(instance: Instance, step_name: str, error: str | None) -> None:
    _audit("compensation_finished", instance, step=step_name, error=error)
