"""The plugin system: pluggy hookspecs for handler types and lifecycle hooks, and the manager.

A plugin is a module or object with `@hookimpl` functions, published under the entry-point group
`floxy`::

    # pyproject.toml of a plugin package
    [project.entry-points.floxy]
    slack = "floxy_slack.plugin"

    # floxy_slack/plugin.py
    from floxy_core.plugins import HandlerType, hookimpl

    @hookimpl
    def floxy_handler_types():
        return [HandlerType("slack", build_slack_handler, schema={...})]

    @hookimpl
    def floxy_workflow_failed(instance, error):
        post_to_slack(f"{instance.workflow_id} #{instance.id} failed: {error}")

Bash, HTTP and python handlers register through the same hook (`floxy_core.handlers.builtin`).
Hook errors are logged and counted and never stop the engine; only `floxy_workflow_starting` may
veto a start, by raising. A plugin object may set `floxy_priority` (default 50): higher runs
first.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from floxy_core.errors import FloxyError
from floxy_core.logs import get_logger
from floxy_core.model import JSON, HandlerSpec, Instance
from floxy_core.records import field, record

if TYPE_CHECKING:
    import pluggy

    from floxy_core.handlers.registry import BuildContext
    from floxy_core.ports import Handler

    hookspec: pluggy.HookspecMarker
    hookimpl: pluggy.HookimplMarker

log = get_logger("floxy.plugins")

PROJECT = "floxy"
ENTRY_POINT_GROUP = "floxy"


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
class HandlerType:
    """A kind of handler a plugin adds: YAML `type: <name>` handlers are built by `factory`."""

    name: str
    factory: Callable[[HandlerSpec, BuildContext], Handler]
    schema: Mapping[str, Any] | None = None
    """JSON Schema of the handler's own keys (everything but name and type)."""
    description: str = ""


class StartVetoed(FloxyError):
    """A plugin refused to start a workflow."""


@record
class PluginInfo:
    name: str
    version: str
    handler_types: list[str] = field(default_factory=list)
    builtin: bool = False


class Plugins:
    """A pluggy manager plus what floxy needs from it: handler factories and safe hook calls.

    Handler types are collected once, when the plugins are registered. The built-in plugin adds
    handler types only, so it needs no pluggy registration, and with no other plugin there is no
    manager at all.
    """

    def __init__(self) -> None:
        self.manager: pluggy.PluginManager | None = None
        self.infos: list[PluginInfo] = []
        self.errors = 0
        self._staged: list[tuple[int, str, object, PluginInfo]] = []
        self._types: dict[str, HandlerType] = {}

    def add(self, plugin: object, name: str, *, version: str = "", builtin: bool = False) -> None:
        priority = int(getattr(plugin, "floxy_priority", 50))
        self._staged.append((priority, name, plugin, PluginInfo(name, version, builtin=builtin)))

    def finish(self) -> Plugins:
        """Register staged plugins lowest priority first: pluggy calls the last one first, and
        a later plugin's handler type replaces an earlier one of the same name."""
        staged = sorted(self._staged, key=lambda s: s[0])
        self._staged.clear()
        for _, name, plugin, info in staged:
            if not info.builtin:
                if self.manager is None:
                    self.manager = _new_manager()
                self.manager.register(plugin, name=name)
            self.infos.append(info)
            impl = getattr(plugin, "floxy_handler_types", None)
            if callable(impl):
                batch = impl()
                info.handler_types = [t.name for t in batch]
                self._types.update((t.name, t) for t in batch)
        return self

    def handler_types(self) -> dict[str, HandlerType]:
        """Handler types by name; a higher-priority plugin wins a name clash."""
        return dict(self._types)

    def call(self, hook: str, **kwargs: Any) -> None:
        """Call every implementation of `floxy_<hook>`; log and count errors, never raise."""
        if self.manager is None:
            return
        caller = getattr(self.manager.hook, f"floxy_{hook}", None)
        if caller is None:
            return
        for impl in reversed(caller.get_hookimpls()):
            try:
                impl.function(**{a: kwargs[a] for a in impl.argnames if a in kwargs})
            except Exception:
                self.errors += 1
                log.exception("plugin %s failed in floxy_%s", impl.plugin_name, hook)

    def runtime_hook(self, name: str, instance: Instance, kwargs: Mapping[str, Any]) -> None:
        """Adapter for `Runtime.hooks`."""
        self.call(name, instance=instance, **kwargs)

    def check_start(self, workflow_id: str, data: JSON) -> None:
        """Let plugins veto a start; the first refusal wins."""
        if self.manager is None:
            return
        for impl in reversed(self.manager.hook.floxy_workflow_starting.get_hookimpls()):
            args = {"workflow_id": workflow_id, "input": data}
            try:
                impl.function(**{a: args[a] for a in impl.argnames if a in args})
            except Exception as exc:
                raise StartVetoed(f"plugin {impl.plugin_name} refused to start: {exc}") from exc


def _new_manager() -> pluggy.PluginManager:
    import pluggy

    from floxy_core.hookspecs import HookSpecs

    manager = pluggy.PluginManager(PROJECT)
    manager.add_hookspecs(HookSpecs)
    return manager


def _wanted(env: str | None) -> set[str] | None:
    if env is None:
        return None
    return {n.strip() for n in env.replace(";", ",").split(",") if n.strip()}


def load_plugins(
    *,
    enabled: Iterable[str] | None = None,
    no_plugins: bool = False,
    extra: Sequence[object] = (),
) -> Plugins:
    """Built-ins, then entry points of the group `floxy` (restricted by `enabled` or
    `FLOXY_PLUGINS`, skipped with `no_plugins`), then `extra` objects (tests, embedding)."""
    from floxy_core.handlers import builtin

    plugins = Plugins()
    plugins.add(builtin, "floxy-builtin", version=_version(), builtin=True)
    wanted = set(enabled) if enabled is not None else _wanted(os.environ.get("FLOXY_PLUGINS"))
    if not no_plugins:
        for ep in _entry_points(ENTRY_POINT_GROUP):
            if wanted is not None and ep.name not in wanted:
                continue
            try:
                plugin = ep.load()
            except Exception as exc:
                raise FloxyError(f"plugin {ep.name!r} ({ep.value}) failed to load: {exc}") from exc
            version = ep.dist.version if ep.dist is not None else ""
            plugins.add(plugin, ep.name, version=version)
        if wanted:
            missing = wanted - {s[1] for s in plugins._staged}
            if missing:
                raise FloxyError(
                    "FLOXY_PLUGINS names plugins that are not installed: "
                    + ", ".join(sorted(missing))
                )
    for index, plugin in enumerate(extra):
        plugins.add(plugin, getattr(plugin, "__name__", f"extra-{index}"))
    return plugins.finish()


def _entry_points(group: str) -> Iterable[Any]:
    """`importlib.metadata.entry_points(group=group)`, skipped when no installed distribution
    can declare the group: importing importlib.metadata (email, zipfile, csv...) would cost a
    short `floxyctl run` about 20 ms, a third of it, on every machine without plugins."""
    if not _may_declare(group):
        return ()
    from importlib.metadata import entry_points

    return entry_points(group=group)


def _may_declare(group: str) -> bool:
    """False only when certain: every `entry_points.txt` importlib.metadata would read (the
    same places as its `Lookup`) is in a directory on sys.path, and none of them has a `[group]`
    section. A zip on sys.path or another distribution finder means "maybe"."""
    import sys
    from importlib.machinery import PathFinder

    if any(hasattr(f, "find_distributions") and f is not PathFinder for f in sys.meta_path):
        return True
    header = f"[{group}]"
    for entry in sys.path:
        if not isinstance(entry, str):
            return True
        directory = entry or "."
        try:
            names = os.listdir(directory)
        except NotADirectoryError:
            return True
        except OSError:
            continue
        in_egg = directory.lower().endswith(".egg")
        for name in names:
            low = name.lower()
            if not (low.endswith((".dist-info", ".egg-info")) or (in_egg and low == "egg-info")):
                continue
            try:
                with open(os.path.join(directory, name, "entry_points.txt"), "rb") as f:
                    if header.encode() in f.read():
                        return True
            except OSError:
                continue
    return False


def _version() -> str:
    from floxy_core import __version__

    return __version__
