"""Turn declared handlers (`HandlerSpec`) into callables, by handler type (see plugins.py).

`BuildContext`, `DebugLog` and `HandlerFactory` live in `floxy_core.plugin_api`; they are
re-exported here for plugins that import them from this module.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Protocol

from floxy_core.errors import FloxyError, SpecError
from floxy_core.model import HandlerSpec, WorkflowFile
from floxy_core.plugin_api import BuildContext as BuildContext
from floxy_core.plugin_api import DebugLog as DebugLog
from floxy_core.plugin_api import HandlerFactory as HandlerFactory
from floxy_core.plugin_api import HandlerType
from floxy_core.ports import Handler


class HandlerTypes(Protocol):
    """Where handler types come from: `floxy_core.plugins.Plugins` (no import of it here)."""

    def handler_types(self) -> Mapping[str, HandlerType]: ...


class HandlerBuildError(FloxyError):
    """Declared handlers could not be created (unknown type, unreadable certificate...)."""

    def __init__(self, located: list[tuple[HandlerSpec, str]]) -> None:
        self.located = located
        self.problems = [message for _, message in located]
        super().__init__("; ".join(self.problems))

    def errors(self, file: str) -> list[SpecError]:
        """One error per problem, at the declaration of its handler in `file`."""
        return [SpecError(file, *spec.where, "handlers", message) for spec, message in self.located]


def build_handlers(
    file: WorkflowFile,
    *,
    debug_log: DebugLog | None = None,
    plugins: HandlerTypes | None = None,
    only: Iterable[str] | None = None,
) -> dict[str, Handler]:
    """One handler per declaration (or per name in `only`); every failure is reported together.

    Handler types come from the plugins (the built-in bash and http when none are given); a
    plugin's JSON Schema validates the handler's own keys first.
    """
    if plugins is None:
        from floxy_core.handlers.builtin import floxy_handler_types

        table: Mapping[str, HandlerType] = {t.name: t for t in floxy_handler_types()}
    else:
        table = plugins.handler_types()
    ctx = BuildContext(tls=file.tls, debug_log=debug_log)
    built: dict[str, Handler] = {}
    problems: list[tuple[HandlerSpec, str]] = []
    wanted = set(only) if only is not None else None
    for spec in file.handlers.values():
        if wanted is not None and spec.name not in wanted:
            continue
        handler_type = table.get(spec.type)
        if handler_type is None:
            known = ", ".join(sorted(table))
            problems.append(
                (
                    spec,
                    f"handler {spec.name!r}: unknown type {spec.type!r} "
                    f"(installed handler types: {known}; is the plugin installed?)",
                )
            )
            continue
        if handler_type.schema is not None:
            invalid = _schema_problems(spec, handler_type.schema)
            if invalid:
                problems.extend((spec, message) for message in invalid)
                continue
        try:
            built[spec.name] = handler_type.factory(spec, ctx)
        except (FloxyError, OSError, ValueError) as exc:
            problems.append((spec, f"failed to create handler {spec.name!r}: {exc}"))
        except Exception as exc:  # a plugin's factory bug is still a handler problem
            problems.append(
                (
                    spec,
                    f"failed to create handler {spec.name!r} ({spec.type}): "
                    f"{type(exc).__name__}: {exc}",
                )
            )
    if problems:
        raise HandlerBuildError(problems)
    return built


def _schema_problems(spec: HandlerSpec, schema: Mapping[str, object]) -> list[str]:
    from jsonschema import Draft202012Validator

    config = dict(spec.config)
    if spec.exec is not None:
        config["exec"] = spec.exec
    validator = Draft202012Validator(schema)
    return [
        f"handler {spec.name!r} ({spec.type}): "
        + (".".join(str(p) for p in error.absolute_path) + ": " if error.absolute_path else "")
        + error.message
        for error in sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path))
    ]


def close_handlers(handlers: Mapping[str, Handler]) -> None:
    for handler in handlers.values():
        close = getattr(handler, "close", None)
        if callable(close):
            close()
