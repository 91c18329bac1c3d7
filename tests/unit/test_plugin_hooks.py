"""Hooks are called through pluggy's own hook callers: wrappers run, unknown hook names are
refused when the plugins load, and a hook that raises is logged and counted, never fatal."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import pytest

from floxy_core.errors import FloxyError
from floxy_core.plugins import HandlerType, StartVetoed, hookimpl, load_plugins


class Wrapping:
    floxy_priority = 10

    def __init__(self, calls: list[str]) -> None:
        self.calls = calls

    @hookimpl(wrapper=True)
    def floxy_step_completed(self, step_name: str) -> Generator[None, Any, Any]:
        self.calls.append(f"before {step_name}")
        result = yield
        self.calls.append(f"after {step_name}")
        return result


class Plain:
    def __init__(self, calls: list[str], *, crash: bool = False) -> None:
        self.calls = calls
        self.crash = crash

    @hookimpl
    def floxy_step_completed(self, step_name: str, output: Any) -> None:
        self.calls.append(f"{step_name} {output}")
        if self.crash:
            raise RuntimeError("plugin bug")


def test_a_wrapper_hook_runs_around_the_plain_ones() -> None:
    calls: list[str] = []
    plugins = load_plugins(no_plugins=True, extra=[Wrapping(calls), Plain(calls)])
    plugins.call("step_completed", instance=None, step_name="s", output=1)
    assert calls == ["before s", "s 1", "after s"]
    assert plugins.errors == 0


def test_a_hook_that_raises_is_counted_and_the_others_still_run() -> None:
    calls: list[str] = []
    crashing = Plain(calls, crash=True)
    crashing.floxy_priority = 60  # type: ignore[attr-defined]
    plugins = load_plugins(no_plugins=True, extra=[Wrapping(calls), crashing, Plain(calls)])
    plugins.call("step_completed", instance=None, step_name="s", output=2)
    # A wrapper wraps every plain implementation, whatever the priorities (pluggy's order).
    assert calls == ["before s", "s 2", "s 2", "after s"]
    assert plugins.errors == 1


def test_a_misspelled_hook_name_is_refused_when_the_plugins_load() -> None:
    class Typo:
        @hookimpl
        def floxy_step_complete(self, step_name: str) -> None: ...

    with pytest.raises(FloxyError, match="floxy_step_complete"):
        load_plugins(no_plugins=True, extra=[Typo()])


def test_an_argument_the_hook_does_not_have_is_refused_when_the_plugins_load() -> None:
    class Wrong:
        @hookimpl
        def floxy_step_completed(self, step_nmae: str) -> None: ...

    with pytest.raises(FloxyError, match="step_nmae"):
        load_plugins(no_plugins=True, extra=[Wrong()])


def test_handler_types_are_collected_through_pluggy() -> None:
    """A wrapper on `floxy_handler_types` sees (and may change) what every plugin declares."""

    def build(spec: Any, ctx: Any) -> Any:
        raise AssertionError("not built here")

    class Echo:
        floxy_priority = 70

        @hookimpl
        def floxy_handler_types(self) -> list[HandlerType]:
            return [HandlerType("echo", build), HandlerType("bash", build)]

    class HidePython:
        @hookimpl(wrapper=True)
        def floxy_handler_types(self) -> Generator[None, Any, Any]:
            batches = yield
            return [[t for t in batch if t.name != "python"] for batch in batches]

    plugins = load_plugins(no_plugins=True, extra=[Echo(), HidePython()])
    table = plugins.handler_types()
    assert sorted(table) == ["bash", "echo", "http"]
    assert table["bash"].factory is build  # the higher priority wins a name clash
    infos = {info.name: info.handler_types for info in plugins.infos}
    assert infos["floxy-builtin"] == ["bash", "http", "python"]
    assert infos["extra-0"] == ["echo", "bash"]


def test_the_first_veto_wins_and_names_its_plugin() -> None:
    class Refuse:
        __name__ = "refuser"

        @hookimpl
        def floxy_workflow_starting(self, input: Any) -> None:
            if input.get("no"):
                raise ValueError("not today")

    plugins = load_plugins(no_plugins=True, extra=[Refuse()])
    plugins.check_start("wf", {})
    with pytest.raises(StartVetoed, match="plugin refuser refused to start: not today"):
        plugins.check_start("wf", {"no": True})
