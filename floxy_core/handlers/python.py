"""The python handler: `exec: package.module:function`, called in-process with (context, input).

The target is imported and checked when the handler is built, so a typo is reported before
anything runs (`floxyctl validate`, `floxyctl run`, `floxyd` start-up), not at the first call.
The module must be importable by the process: installed, or on `PYTHONPATH`.

A call gets a private copy of the input and its result must be JSON: the function cannot change
the stored input by mutating it, and a result the stores could not save fails the attempt (and is
retried like any failure). Numbers are exact (`values.py`): a fraction a float cannot hold
arrives as a `decimal.Decimal`.
"""

from __future__ import annotations

import importlib
import inspect
import re
from collections.abc import Callable
from typing import Any

from floxy_core import values
from floxy_core.errors import HandlerError, UnstorableValue
from floxy_core.model import JSON
from floxy_core.ports import StepContext

__all__ = ["EXEC_PATTERN", "PythonHandler", "resolve"]

USER_MODULES: set[str] = set()
"""Modules imported for python handlers: their `atexit` handlers must run, so a process that
imported one leaves through the normal teardown (floxyctl's fast exit checks this)."""

_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
EXEC_PATTERN = rf"^{_IDENT}(\.{_IDENT})*:{_IDENT}(\.{_IDENT})*$"
"""`package.module:function`; the part after the colon may be dotted (`module:Class.method`)."""

_EXEC = re.compile(EXEC_PATTERN)

PythonFunction = Callable[[StepContext, JSON], Any]


def _fail(message: str) -> HandlerError:
    return HandlerError(message, retryable=False)


def resolve(target: str) -> PythonFunction:
    """The callable `target` names; a `HandlerError` that says what is wrong otherwise."""
    target = target.strip()
    if not _EXEC.match(target):
        raise _fail(f"exec must be 'package.module:function', got {target!r}")
    module_name, _, attr_path = target.partition(":")
    try:
        module = importlib.import_module(module_name)
        USER_MODULES.add(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (module_name + ".").startswith(exc.name + "."):
            raise _fail(
                f"cannot import module {module_name!r} for {target!r}: {exc} "
                "(is it installed or on PYTHONPATH?)"
            ) from exc
        raise _fail(f"importing module {module_name!r} failed: {exc}") from exc
    except Exception as exc:  # the module itself raised (syntax error, failing import...)
        raise _fail(
            f"importing module {module_name!r} failed: {type(exc).__name__}: {exc}"
        ) from exc
    value: Any = module
    seen: list[str] = []
    for part in attr_path.split("."):
        try:
            value = getattr(value, part)
        except AttributeError:
            owner = (
                f"module {module_name!r}" if not seen else repr(f"{module_name}:{'.'.join(seen)}")
            )
            raise _fail(f"{owner} has no attribute {part!r} (exec {target!r})") from None
        seen.append(part)
    if not callable(value):
        raise _fail(f"{target!r} is not callable (it is {type(value).__name__})")
    if inspect.iscoroutinefunction(value):
        raise _fail(f"{target!r} is an async function; the python handler calls plain functions")
    try:
        signature = inspect.signature(value)
    except (TypeError, ValueError):  # some builtins have no signature: trust them
        return value  # type: ignore[no-any-return]
    try:
        signature.bind(None, None)
    except TypeError:
        raise _fail(
            f"{target!r} must accept two arguments (context, input); its signature is {signature}"
        ) from None
    return value  # type: ignore[no-any-return]


class PythonHandler:
    """A `Handler` calling `function(ctx, input)` in the worker thread."""

    def __init__(self, name: str, target: str) -> None:
        self.name = name
        self.target = target.strip()
        self.function = resolve(self.target)

    def __repr__(self) -> str:
        return f"PythonHandler({self.name!r}, {self.target!r})"

    def __call__(self, ctx: StepContext, data: JSON) -> JSON:
        if ctx.interrupt.is_set():
            raise _fail("python handler not called: instance cancelled")
        result = self.function(ctx, _copy(data))
        try:
            return _copy(values.storable(result))
        except UnstorableValue as exc:
            # retryable like any failed attempt: the function may return something else next time
            raise HandlerError(
                f"{self.target} returned a value that cannot be stored: {exc}"
            ) from exc


def _copy(value: Any) -> JSON:
    """A deep copy through JSON: the caller and the function share nothing."""
    return values.loads(values.dumps(value))
