"""The plugin manager: finds plugins, collects their handler types, calls their hooks safely.

A plugin is a module or object with `@hookimpl` functions, published under the entry-point group
`floxy`::

    # pyproject.toml of a plugin package
    [project.entry-points.floxy]
    slack = "floxy_slack.plugin"

    # floxy_slack/plugin.py
    from floxy_core.plugin_api import HandlerType, hookimpl

    @hookimpl
    def floxy_handler_types():
        return [HandlerType("slack", build_slack_handler, schema={...})]

    @hookimpl
    def floxy_workflow_failed(instance, error):
        post_to_slack(f"{instance.workflow_id} #{instance.id} failed: {error}")

What a plugin author needs is in the leaf module `floxy_core.plugin_api`; this module
re-exports it (`HandlerType`, `BuildContext`, `hookimpl`, `hookspec`). Bash, HTTP and python
handlers register through the same hook (`floxy_core.handlers.builtin`); the hooks themselves
are specified in `floxy_core.hookspecs`. Hook errors are logged and counted and never stop the
engine; only `floxy_workflow_starting` may veto a start, by raising. A plugin object may set
`floxy_priority` (default 50): higher runs first.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from floxy_core import plugin_api
from floxy_core.errors import FloxyError
from floxy_core.logs import get_logger
from floxy_core.model import JSON, Instance
from floxy_core.plugin_api import HANDLER_TYPES_HOOK, PROJECT, STARTING_HOOK, Event
from floxy_core.plugin_api import BuildContext as BuildContext
from floxy_core.plugin_api import HandlerType as HandlerType
from floxy_core.records import field, record

if TYPE_CHECKING:
    import pluggy

    hookspec: pluggy.HookspecMarker
    hookimpl: pluggy.HookimplMarker

log = get_logger("floxy.plugins")

ENTRY_POINT_GROUP = PROJECT


def __getattr__(name: str) -> Any:
    """`hookimpl` and `hookspec` are `floxy_core.plugin_api`'s (made, with pluggy, on first
    use)."""
    if name not in ("hookimpl", "hookspec"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    marker = globals()[name] = getattr(plugin_api, name)
    return marker


class StartVetoed(FloxyError):
    """A plugin refused to start a workflow."""


@record
class PluginInfo:
    name: str
    version: str
    handler_types: list[str] = field(default_factory=list)
    builtin: bool = False


class Plugins:
    """A pluggy manager plus what floxy needs from it: handler types and safe hook calls.

    Every hook is called through pluggy's own hook caller (`manager.hook.floxy_<name>`), so
    `tryfirst`, `trylast`, `wrapper=True` and old-style `hookwrapper=True` implementations
    behave as pluggy documents. What floxy adds is error isolation: when the plugins are
    loaded, each plain implementation's function is replaced by a guard that logs and counts
    its exception and returns None, so one plugin's bug neither stops the other plugins nor
    reaches the engine (pluggy itself would abandon the call at the first exception). A
    wrapper sees the call succeed; an exception a wrapper raises itself is caught at the call,
    logged and counted. `floxy_workflow_starting` is not guarded that way: its first exception
    is the veto. `floxy_handler_types` is not either: a plugin that cannot say its types stops
    the load.

    Handler types are collected once, when the plugins are registered. With the built-in
    plugin alone there is no manager at all (pluggy costs a short `floxyctl run` about 5 ms),
    and its handler types are read directly; once any other plugin is loaded, the built-in one
    is registered with pluggy like a third-party plugin.
    """

    def __init__(self) -> None:
        self.manager: pluggy.PluginManager | None = None
        self.infos: list[PluginInfo] = []
        self.errors = 0
        self._staged: list[tuple[int, str, object, PluginInfo]] = []
        self._types: dict[str, HandlerType] = {}
        self._declared: dict[str, list[HandlerType]] = {}
        self._vetoer = threading.local()

    def add(self, plugin: object, name: str, *, version: str = "", builtin: bool = False) -> None:
        priority = int(getattr(plugin, "floxy_priority", 50))
        self._staged.append((priority, name, plugin, PluginInfo(name, version, builtin=builtin)))

    def finish(self) -> Plugins:
        """Register staged plugins lowest priority first: pluggy calls the last one first, and
        a later plugin's handler type replaces an earlier one of the same name."""
        staged = sorted(self._staged, key=lambda s: s[0])
        self._staged.clear()
        if self.manager is None and all(info.builtin for *_, info in staged):
            for _, _, plugin, info in staged:
                self.infos.append(info)
                impl = getattr(plugin, "floxy_handler_types", None)
                if callable(impl):
                    batch = impl()
                    info.handler_types = [t.name for t in batch]
                    self._types.update((t.name, t) for t in batch)
            return self
        import pluggy

        if self.manager is None:
            self.manager = _new_manager()
        manager = self.manager
        for _, name, plugin, info in staged:
            if info.builtin:
                _mark_builtin(plugin)
            try:
                manager.register(plugin, name=name)
            except pluggy.PluginValidationError as exc:
                raise FloxyError(f"plugin {name!r} cannot be loaded: {exc}") from exc
            self.infos.append(info)
        try:
            manager.check_pending()
        except pluggy.PluginValidationError as exc:
            unknown = sorted(
                name
                for name, caller in vars(manager.hook).items()
                if not caller.has_spec()
                and any(i.plugin is exc.plugin for i in caller.get_hookimpls())
            )
            raise FloxyError(
                f"plugin {manager.get_name(exc.plugin)!r} implements unknown hook(s) "
                f"{', '.join(unknown)}: a misspelled name? (docs/plugins.md lists the hooks)"
            ) from exc
        self._guard(manager)
        self._declared.clear()
        batches: list[list[HandlerType]] = getattr(manager.hook, HANDLER_TYPES_HOOK)()
        for info in self.infos:
            if info.name in self._declared:
                info.handler_types = [t.name for t in self._declared[info.name]]
        for batch in reversed(batches):  # pluggy's call order: the highest priority first
            self._types.update((t.name, t) for t in batch)
        return self

    def _guard(self, manager: pluggy.PluginManager) -> None:
        """Put floxy's error handling around every plain implementation (see the class)."""
        for hook_name, caller in vars(manager.hook).items():
            if not hook_name.startswith("floxy_"):
                continue
            for impl in caller.get_hookimpls():
                if impl.wrapper or impl.hookwrapper or getattr(impl.function, "_floxy_guard", 0):
                    continue
                impl.function = self._guarded(hook_name, impl.plugin_name, impl.function)

    def _guarded(
        self, hook_name: str, plugin_name: str, function: Callable[..., Any]
    ) -> Callable[..., Any]:
        if hook_name == HANDLER_TYPES_HOOK:

            def guard(*args: Any, **kwargs: Any) -> Any:
                try:
                    result = function(*args, **kwargs)
                except Exception as exc:
                    raise FloxyError(
                        f"plugin {plugin_name!r} failed in {HANDLER_TYPES_HOOK}: "
                        f"{type(exc).__name__}: {exc}"
                    ) from exc
                if result is not None:
                    self._declared[plugin_name] = list(result)
                return result

        elif hook_name == STARTING_HOOK:

            def guard(*args: Any, **kwargs: Any) -> Any:
                try:
                    return function(*args, **kwargs)
                except Exception:
                    self._vetoer.name = plugin_name
                    raise

        else:

            def guard(*args: Any, **kwargs: Any) -> Any:
                try:
                    return function(*args, **kwargs)
                except Exception:
                    self.errors += 1
                    log.exception("plugin %s failed in %s", plugin_name, hook_name)
                    return None

        guard._floxy_guard = 1  # type: ignore[attr-defined]
        return guard

    def handler_types(self) -> dict[str, HandlerType]:
        """Handler types by name; a higher-priority plugin wins a name clash."""
        return dict(self._types)

    def call(self, event: Event | str, **kwargs: Any) -> None:
        """Call the event's hook (`floxy_<event>`) through pluggy; log and count errors, never
        raise. A name that is no `Event` is a bug of the caller: ValueError."""
        if self.manager is None:
            return
        hook = Event(event).hook
        try:
            getattr(self.manager.hook, hook)(**kwargs)
        except Exception:  # a wrapper's own exception: the plain ones are guarded
            self.errors += 1
            log.exception("a plugin's hook wrapper failed in %s", hook)

    def runtime_hook(self, name: str, instance: Instance, kwargs: Mapping[str, Any]) -> None:
        """Adapter for `Runtime.hooks`."""
        self.call(name, instance=instance, **kwargs)

    def check_start(self, workflow_id: str, data: JSON) -> None:
        """Let plugins veto a start; the first refusal wins."""
        if self.manager is None:
            return
        self._vetoer.name = None
        try:
            getattr(self.manager.hook, STARTING_HOOK)(workflow_id=workflow_id, input=data)
        except Exception as exc:
            who = self._vetoer.name or "hook wrapper"
            raise StartVetoed(f"plugin {who} refused to start: {exc}") from exc


def _mark_builtin(plugin: object) -> None:
    """The built-in plugin's hooks carry no `@hookimpl` (that would import pluggy for every
    run); they get it here, once a manager is made, and pluggy sees them like any other."""
    from floxy_core.hookspecs import HookSpecs

    marker = plugin_api.hookimpl
    for name in dir(HookSpecs):
        function = getattr(plugin, name, None) if name.startswith("floxy_") else None
        if callable(function) and not hasattr(function, f"{PROJECT}_impl"):
            marker(function)


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
