"""What a plugin author imports: the markers, `HandlerType`, `BuildContext` and the types a
handler factory and a hook see. A leaf: it imports the value modules (`model`, `ports`,
`errors`, `records`) and never the engine, the runtime, the stores, the handlers, the plugin
manager or pluggy (the markers import pluggy on first use)::

    from floxy_core.plugin_api import BuildContext, HandlerSpec, HandlerType, hookimpl

    @hookimpl
    def floxy_handler_types():
        return [HandlerType("slack", build_slack_handler, schema={...})]

`floxy_core.plugins` re-exports these names, so plugins written against it keep working.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from floxy_core.errors import HandlerError, HandlerTimeout
from floxy_core.model import JSON, PROJECT, HandlerSpec, Instance, TLSConfig
from floxy_core.model import LifecycleEvent as Event
from floxy_core.ports import Handler, StepContext
from floxy_core.records import record

if TYPE_CHECKING:
    import pluggy

    hookspec: pluggy.HookspecMarker
    hookimpl: pluggy.HookimplMarker

__all__ = [
    "HANDLER_TYPES_HOOK",
    "JSON",
    "PROJECT",
    "STARTING_HOOK",
    "BuildContext",
    "DebugLog",
    "Event",
    "Handler",
    "HandlerError",
    "HandlerFactory",
    "HandlerSpec",
    "HandlerTimeout",
    "HandlerType",
    "Instance",
    "StepContext",
    "TLSConfig",
    "hookimpl",
    "hookspec",
]

DebugLog = Callable[[str], None]


HANDLER_TYPES_HOOK = "floxy_handler_types"
"""Called once when the plugins are loaded; returns a list of `HandlerType`."""
STARTING_HOOK = "floxy_workflow_starting"
"""Called before an instance is created; an exception vetoes the start."""


def __getattr__(name: str) -> Any:
    """`hookimpl` and `hookspec` import pluggy when a plugin first asks for them: a run with
    only the built-in handler types never needs pluggy, which costs `floxyctl run` about 5 ms.
    Once made, a marker is a plain module attribute and this is not called again."""
    if name not in ("hookimpl", "hookspec"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import pluggy

    kind = pluggy.HookimplMarker if name == "hookimpl" else pluggy.HookspecMarker
    marker = globals()[name] = kind(PROJECT)
    return marker


@record(frozen=True)
class BuildContext:
    """What a factory may use besides the spec: the file's TLS default and the debug sink."""

    tls: TLSConfig | None = None
    debug_log: DebugLog | None = None


HandlerFactory = Callable[[HandlerSpec, BuildContext], Handler]


@record(frozen=True)
class HandlerType:
    """A kind of handler a plugin adds: YAML `type: <name>` handlers are built by `factory`."""

    name: str
    factory: HandlerFactory
    schema: Mapping[str, Any] | None = None
    """JSON Schema of the handler's own keys (everything but name and type)."""
    description: str = ""
