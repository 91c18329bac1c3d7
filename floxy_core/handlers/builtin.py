"""Bash, HTTP and python handlers: the built-in plugin.

`floxy_handler_types` is the hook a third-party plugin implements. It carries no `@hookimpl`
marker, which would import pluggy; `floxy_core.plugins` marks it when a manager is needed.
"""

from __future__ import annotations

from floxy_core.model import HandlerSpec
from floxy_core.plugin_api import BuildContext, HandlerType
from floxy_core.ports import Handler

floxy_priority = 0
"""Lowest priority: a plugin may replace `bash` or `http` by declaring the same type name."""


def build_bash(spec: HandlerSpec, ctx: BuildContext) -> Handler:
    from floxy_core.handlers.bash import BashHandler

    workdir = spec.config.get("workdir")
    input_env = spec.config.get("input_env", True)
    return BashHandler(
        spec.name,
        spec.exec or "",
        base_dir=spec.base_dir,
        workdir=workdir if isinstance(workdir, str) else None,
        input_env=input_env if isinstance(input_env, bool) else tuple(input_env),
        debug_log=ctx.debug_log,
    )


def build_http(spec: HandlerSpec, ctx: BuildContext) -> Handler:
    from floxy_core.durations import parse_duration_ms
    from floxy_core.handlers.http import DEFAULT_TIMEOUT_S, HttpHandler

    # The step's timeout wins at call time; the handler's own replaces the 30 s default.
    raw_timeout = spec.config.get("timeout")
    timeout_ms = parse_duration_ms(raw_timeout, what="timeout") if raw_timeout is not None else 0
    return HttpHandler(
        spec.name,
        (spec.exec or "").strip(),
        tls=spec.tls if spec.tls is not None else ctx.tls,
        default_timeout_s=timeout_ms / 1000.0 if timeout_ms > 0 else DEFAULT_TIMEOUT_S,
        debug_log=ctx.debug_log,
    )


def build_python(spec: HandlerSpec, ctx: BuildContext) -> Handler:
    """The workflow schema checks a python handler's keys in YAML; a spec built in code gets the
    same refusal here, without a JSON Schema (jsonschema costs `floxyctl run` about 60 ms)."""
    from floxy_core.errors import FloxyError
    from floxy_core.handlers.python import PythonHandler

    if spec.config:
        raise FloxyError(f"unexpected keys for a python handler: {', '.join(sorted(spec.config))}")
    return PythonHandler(spec.name, spec.exec or "")


def floxy_handler_types() -> list[HandlerType]:
    return [
        HandlerType("bash", build_bash, description="inline bash or a script file (exec)"),
        HandlerType("http", build_http, description="POST to an http(s):// URL (exec)"),
        HandlerType(
            "python",
            build_python,
            description="call package.module:function (exec) in-process with (context, input)",
        ),
    ]
