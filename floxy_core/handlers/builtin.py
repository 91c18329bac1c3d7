"""Bash and HTTP handlers, registered through the same hook a third-party plugin uses."""

from __future__ import annotations

from floxy_core.handlers.registry import BuildContext
from floxy_core.model import HandlerSpec
from floxy_core.plugins import HandlerType, hookimpl
from floxy_core.ports import Handler

floxy_priority = 0
"""Lowest priority: a plugin may replace `bash` or `http` by declaring the same type name."""


def build_bash(spec: HandlerSpec, ctx: BuildContext) -> Handler:
    from floxy_core.handlers.bash import BashHandler

    return BashHandler(spec.name, spec.exec or "", base_dir=spec.base_dir, debug_log=ctx.debug_log)


def build_http(spec: HandlerSpec, ctx: BuildContext) -> Handler:
    from floxy_core.handlers.http import HttpHandler

    return HttpHandler(
        spec.name,
        (spec.exec or "").strip(),
        tls=spec.tls if spec.tls is not None else ctx.tls,
        debug_log=ctx.debug_log,
    )


@hookimpl
def floxy_handler_types() -> list[HandlerType]:
    return [
        HandlerType("bash", build_bash, description="inline bash or a script file (exec)"),
        HandlerType("http", build_http, description="POST to an http(s):// URL (exec)"),
    ]
