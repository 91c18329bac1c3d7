"""The composition root: every front end's runtime gets the plugins' hook and veto the same way."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from floxy_core.storage.memory import MemoryStore
from floxy_core.wiring import build_runtime


class _Plugins:
    """What the wiring needs of `floxy_core.plugins.Plugins`."""

    def runtime_hook(self, name: str, instance: Any, kwargs: Mapping[str, Any]) -> None:
        pass

    def check_start(self, workflow_id: str, data: Any) -> None:
        pass


def _metrics(name: str, instance: Any, kwargs: Mapping[str, Any]) -> None:
    pass


def test_the_plugins_hook_runs_first_and_their_veto_guards_starts() -> None:
    plugins = _Plugins()
    runtime = build_runtime(MemoryStore(), plugins, hooks=[_metrics])  # type: ignore[arg-type]
    assert runtime.hooks == [plugins.runtime_hook, _metrics]
    assert runtime.start_guards == [plugins.check_start]
    assert runtime.handlers == {}


def test_runtime_options_pass_through() -> None:
    handler = object()
    runtime = build_runtime(
        MemoryStore(),
        _Plugins(),  # type: ignore[arg-type]
        {"h": handler},  # type: ignore[dict-item]
        workers=2,
        poll_interval=0.5,
        distributed=False,
    )
    assert runtime.handlers == {"h": handler}
    assert (runtime.workers, runtime.poll_interval, runtime.distributed) == (2, 0.5, False)
