"""Turn declared handlers (`HandlerSpec`) into callables, by handler type.

Bash and HTTP are registered here the way a plugin's handler types will be: a factory per type
name. The plugin system adds factories; nothing else changes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from floxy_core.errors import FloxyError, HandlerError
from floxy_core.model import HandlerSpec, TLSConfig, WorkflowFile
from floxy_core.ports import Handler

DebugLog = Callable[[str], None]


@dataclass(frozen=True)
class BuildContext:
    """What a factory may use besides the spec: the file's TLS default and the debug sink."""

    tls: TLSConfig | None = None
    debug_log: DebugLog | None = None


HandlerFactory = Callable[[HandlerSpec, BuildContext], Handler]


def _bash(spec: HandlerSpec, ctx: BuildContext) -> Handler:
    from floxy_core.handlers.bash import BashHandler

    return BashHandler(spec.name, spec.exec or "", base_dir=spec.base_dir, debug_log=ctx.debug_log)


def _http(spec: HandlerSpec, ctx: BuildContext) -> Handler:
    from floxy_core.handlers.http import HttpHandler

    return HttpHandler(
        spec.name,
        (spec.exec or "").strip(),
        tls=spec.tls if spec.tls is not None else ctx.tls,
        debug_log=ctx.debug_log,
    )


BUILTIN_FACTORIES: Mapping[str, HandlerFactory] = {"bash": _bash, "http": _http}


class HandlerBuildError(FloxyError):
    """A declared handler could not be created (unknown type, unreadable certificate...)."""


def build_handlers(
    file: WorkflowFile,
    *,
    debug_log: DebugLog | None = None,
    factories: Mapping[str, HandlerFactory] | None = None,
) -> dict[str, Handler]:
    """One handler per declaration; every failure is reported together."""
    table = dict(BUILTIN_FACTORIES if factories is None else factories)
    ctx = BuildContext(tls=file.tls, debug_log=debug_log)
    built: dict[str, Handler] = {}
    problems: list[str] = []
    for spec in file.handlers.values():
        factory = table.get(spec.type)
        if factory is None:
            known = ", ".join(sorted(table))
            problems.append(f"handler {spec.name!r}: unknown type {spec.type!r} (known: {known})")
            continue
        try:
            built[spec.name] = factory(spec, ctx)
        except (HandlerError, OSError, ValueError) as exc:
            problems.append(f"failed to create handler {spec.name!r}: {exc}")
    if problems:
        raise HandlerBuildError("; ".join(problems))
    return built


def close_handlers(handlers: Mapping[str, Handler]) -> None:
    for handler in handlers.values():
        close = getattr(handler, "close", None)
        if callable(close):
            close()
