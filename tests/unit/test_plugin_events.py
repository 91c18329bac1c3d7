"""Event and hook names have one home, `plugin_api.Event`: checked against the hookspecs and
against every event the engine fires, with the arguments it passes."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

from floxy_core.hookspecs import HookSpecs
from floxy_core.model import LifecycleEvent
from floxy_core.plugin_api import HANDLER_TYPES_HOOK, STARTING_HOOK, Event
from floxy_core.plugins import load_plugins

ENGINE = Path(__file__).resolve().parents[2] / "floxy_core" / "engine"


def _spec_args() -> dict[str, set[str]]:
    return {
        name: set(inspect.signature(function).parameters) - {"self"}
        for name, function in vars(HookSpecs).items()
        if name.startswith("floxy_")
    }


def _fired() -> list[tuple[str, str, set[str]]]:
    """(file:line, event name, keyword names) of every `tx.hook(LifecycleEvent.X, ...)` in the
    engine."""
    found = []
    for path in sorted(ENGINE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "hook"
                and node.args
            ):
                first = node.args[0]
                where = f"{path.name}:{node.lineno}"
                assert isinstance(first, ast.Attribute), f"{where}: fires an Event member"
                assert isinstance(first.value, ast.Name), where
                assert first.value.id == "LifecycleEvent", where
                names = {k.arg for k in node.keywords if k.arg is not None}
                found.append((where, LifecycleEvent[first.attr].value, names))
    return found


def test_every_hookspec_is_an_event_or_a_load_time_hook() -> None:
    assert set(_spec_args()) == {e.hook for e in Event} | {HANDLER_TYPES_HOOK, STARTING_HOOK}


def test_the_scan_sees_the_engine_fire() -> None:
    assert {name for _, name, _ in _fired()} >= {"workflow_started", "compensation_finished"}


@pytest.mark.parametrize(("where", "name", "kwargs"), _fired(), ids=lambda v: str(v))
def test_every_event_the_engine_fires_matches_its_hookspec(
    where: str, name: str, kwargs: set[str]
) -> None:
    """The runtime adds `instance`; pluggy needs every argument of the spec, no other."""
    assert name in set(Event), f"{where}: {name!r} is not an Event"
    assert kwargs | {"instance"} == _spec_args()[Event(name).hook], where


def test_a_name_that_is_no_event_is_a_bug_of_the_caller() -> None:
    class Quiet:
        pass

    plugins = load_plugins(no_plugins=True, extra=[Quiet()])
    assert plugins.manager is not None
    with pytest.raises(ValueError, match="step_complete"):
        plugins.call("step_complete", instance=None, step_name="s", output=1)
    plugins.call(Event.STEP_COMPLETED, instance=None, step_name="s", output=1)
