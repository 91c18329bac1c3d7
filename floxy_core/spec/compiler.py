"""Validated YAML document → `WorkflowFile` (handler specs + immutable workflow graphs).

The loader has already rejected everything that is wrong with the file, so this module only
translates shapes; it drives the same `Builder` library users call.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Any

from floxy_core.builder import Builder, Compensation, Options, Task
from floxy_core.durations import parse_duration_ms
from floxy_core.errors import DefinitionError, SpecError, ValidationError
from floxy_core.model import (
    DEFAULT_MAX_RETRIES,
    DEFAULT_PRIORITY,
    HandlerSpec,
    RetryStrategy,
    TLSConfig,
    WorkflowDefinition,
    WorkflowFile,
    default_join_name,
)
from floxy_core.secrets import redact
from floxy_core.spec.document import RETRY_STRATEGIES, Document, expression_key


def compile_document(document: Document) -> WorkflowFile:
    data = document.data
    base_dir = os.path.dirname(os.path.abspath(document.path)) if document.path else "."
    handlers = {
        h["name"]: _handler_spec(h, base_dir, document.where(("handlers", index)))
        for index, h in enumerate(data.get("handlers") or [])
        if "name" in h
    }
    flows: list[WorkflowDefinition] = []
    errors: list[SpecError] = []
    for index, flow in enumerate(data.get("flows") or []):
        try:
            flows.append(_compile_flow(flow, handlers))
        except DefinitionError as exc:
            line, column = document.where(("flows", index))
            errors.append(SpecError(document.path, line, column, f"flows[{index}]", str(exc)))
    if errors:
        raise ValidationError(errors)
    return WorkflowFile(
        path=document.path,
        handlers=MappingProxyType(handlers),
        flows=tuple(flows),
        tls=_tls(data.get("tls")),
        warnings=tuple(document.warnings),
    )


def _tls(raw: Mapping[str, Any] | None) -> TLSConfig | None:
    if raw is None:
        return None
    return TLSConfig(
        skip_verify=bool(raw.get("skip_verify", False)),
        cert_file=raw.get("cert_file") or None,
        key_file=raw.get("key_file") or None,
        ca_file=raw.get("ca_file") or None,
    )


def _handler_spec(raw: Mapping[str, Any], base_dir: str, where: tuple[int, int]) -> HandlerSpec:
    exec_ = raw.get("exec")
    kind = raw.get("type")
    if kind is None:
        text = (exec_ or "").strip()
        kind = "http" if text.startswith(("http://", "https://")) else "bash"
    config = {
        k: v for k, v in raw.items() if k not in ("name", "type", "exec", "tls", "description")
    }
    return HandlerSpec(
        name=raw["name"],
        type=kind,
        exec=exec_,
        tls=_tls(raw.get("tls")),
        config=MappingProxyType(config),
        base_dir=base_dir,
        where=where,
    )


def _compile_flow(
    flow: Mapping[str, Any], handlers: Mapping[str, HandlerSpec]
) -> WorkflowDefinition:
    builder = Builder(
        flow["name"],
        version=int(flow.get("version", 1)),
        max_retries=int(flow.get("max_retries", DEFAULT_MAX_RETRIES)),
        dlq=bool(flow.get("dlq", False)),
    )
    _add_steps(builder, flow["steps"], handlers)
    return builder.build()


def _ms(raw: Mapping[str, Any], key: str) -> int | None:
    value = raw.get(key)
    return None if value is None else parse_duration_ms(value, what=key)


def _options(raw: Mapping[str, Any], handler: str, handlers: Mapping[str, HandlerSpec]) -> Options:
    metadata: dict[str, Any] = {}
    spec = handlers.get(handler)
    if spec is not None and spec.exec is not None:
        # Stored with the definition and sent in HTTP request bodies: never a URL's password.
        metadata["exec"] = redact(spec.exec)
    metadata.update(raw.get("metadata") or {})
    strategy = raw.get("retry_strategy") or "fixed"
    if strategy not in RETRY_STRATEGIES:  # the loader warned: the reference takes it as fixed
        strategy = "fixed"
    return Options(
        max_retries=raw.get("max_retries"),
        no_idempotent=bool(raw.get("no_idempotent", False)),
        delay_ms=_ms(raw, "delay") or 0,
        retry_delay_ms=_ms(raw, "retry_delay") or 0,
        retry_strategy=RetryStrategy(strategy),
        retry_max_delay_ms=_ms(raw, "retry_max_delay"),
        retry_jitter=bool(raw.get("retry_jitter", False)),
        timeout_ms=_ms(raw, "timeout") or None,
        metadata=metadata,
        priority=int(raw.get("priority", DEFAULT_PRIORITY)),
    )


def _compensation(raw: Any, handlers: Mapping[str, HandlerSpec]) -> Compensation | None:
    if raw is None:
        return None
    if isinstance(raw, str):
        return Compensation(raw, raw, _options({}, raw, handlers))
    handler = raw["handler"]
    return Compensation(raw.get("name") or handler, handler, _options(raw, handler, handlers))


def _task(raw: Any, handlers: Mapping[str, HandlerSpec]) -> Task:
    if isinstance(raw, str):
        return Task(raw, raw, _options({}, raw, handlers))
    handler = raw.get("handler") or raw["name"]
    return Task(
        raw["name"],
        handler,
        _options(raw, handler, handlers),
        _compensation(raw.get("on_failure"), handlers),
    )


def _add_steps(builder: Builder, steps: Sequence[Any], handlers: Mapping[str, HandlerSpec]) -> None:
    for raw in steps:
        kind = "task" if isinstance(raw, str) else raw.get("type") or "task"
        if kind == "task":
            task = _task(raw, handlers)
            builder.step(task.name, task.handler, task.options)
            if task.on_failure is not None:
                comp = task.on_failure
                builder.on_failure(comp.name, comp.handler, comp.options)
        elif kind == "parallel":
            builder.parallel(raw["name"], *(_task(t, handlers) for t in raw["tasks"]))
        elif kind == "condition":
            expr = raw.get(expression_key(raw)) or ""
            otherwise = raw.get("else")
            builder.condition(
                raw["name"], expr, _branch(otherwise, handlers) if otherwise else None
            )
        elif kind in ("savepoint", "save_point"):
            builder.save_point(raw["name"])
        elif kind == "fork":
            builder.fork(raw["name"], *(_branch(b, handlers) for b in raw["branches"]))
            join = raw.get("join") or {}
            builder.join(
                join.get("name") or default_join_name(raw["name"]), join.get("strategy", "all")
            )
        elif kind == "human":
            builder.wait_human_confirm(
                raw["name"], timeout_ms=_ms(raw, "timeout"), metadata=raw.get("metadata")
            )
        else:  # the schema makes this unreachable
            raise DefinitionError(f"unsupported step type {kind!r}")


def _branch(steps: Sequence[Any], handlers: Mapping[str, HandlerSpec]) -> Callable[[Builder], None]:
    def fill(sub: Builder) -> None:
        _add_steps(sub, steps, handlers)

    return fill
