"""The composition root: where the plugins, the handlers and a store become a `Runtime`.

Every front end builds its runtime here — `floxyctl run` (in-memory store, workers),
floxyctl's database commands (PostgreSQL, no workers: control operations only) and floxyd
(PostgreSQL, workers) — so the plugin lifecycle hooks and start vetoes are wired the same way
everywhere:

    plugins = load_plugins()                          # floxy_core.plugins
    handlers = build_handlers(file, plugins=plugins)  # floxy_core.handlers.registry
    runtime = build_runtime(store, plugins, handlers, workers=4)

Loading the plugins and building the handlers stay separate calls: each front end reports
their errors in its own words, and floxyd builds its handlers before it touches the database.
What a front end adds of its own (floxyd's metrics hook and engine settings) it passes in.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from floxy_core.runtime import Hook, Runtime

if TYPE_CHECKING:
    from floxy_core.plugins import Plugins
    from floxy_core.ports import Handler, Store


def build_runtime(
    store: Store,
    plugins: Plugins,
    handlers: Mapping[str, Handler] | None = None,
    *,
    hooks: Iterable[Hook] = (),
    **options: Any,
) -> Runtime:
    """A runtime over `store` running `handlers` (none: it only starts, retries, decides and
    requeues), with the plugins' lifecycle hook first, then `hooks`, and the plugins' start
    veto. `options` are `Runtime`'s own (workers, poll_interval, engine, debug, …)."""
    return Runtime(
        store,
        handlers or {},
        hooks=[plugins.runtime_hook, *hooks],
        start_guards=[plugins.check_start],
        **options,
    )
