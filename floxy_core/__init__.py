"""floxy: a YAML-first workflow and saga engine.

The public Python API is importable from here (`from floxy_core import Builder, Runtime,
MemoryStore`). Names are loaded on first use (PEP 562), so `import floxy_core` stays as cheap
as it was: `floxyctl run` pays only for what it uses, and `PostgresStore` pulls in psycopg only
when asked for.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_HOMES = {
    "Builder": "floxy_core.builder",
    "Compensation": "floxy_core.builder",
    "Options": "floxy_core.builder",
    "Task": "floxy_core.builder",
    "ConflictError": "floxy_core.errors",
    "DefinitionError": "floxy_core.errors",
    "FloxyError": "floxy_core.errors",
    "HandlerError": "floxy_core.errors",
    "InputError": "floxy_core.errors",
    "NotFoundError": "floxy_core.errors",
    "ValidationError": "floxy_core.errors",
    "HandlerType": "floxy_core.plugin_api",
    "hookimpl": "floxy_core.plugin_api",
    "load_plugins": "floxy_core.plugins",
    "Instance": "floxy_core.model",
    "RetryStrategy": "floxy_core.model",
    "StepRecord": "floxy_core.model",
    "WorkflowDefinition": "floxy_core.model",
    "StepContext": "floxy_core.ports",
    "Runtime": "floxy_core.runtime",
    "load_workflow_file": "floxy_core.spec",
    "load_workflow_text": "floxy_core.spec",
    "InstanceStatus": "floxy_core.status",
    "StepStatus": "floxy_core.status",
    "build_handlers": "floxy_core.handlers.registry",
    "close_handlers": "floxy_core.handlers.registry",
    "MemoryStore": "floxy_core.storage.memory",
    "PostgresStore": "floxy_core.storage.postgres",
    "build_runtime": "floxy_core.wiring",
}

__all__ = [
    "Builder",
    "Compensation",
    "ConflictError",
    "DefinitionError",
    "FloxyError",
    "HandlerError",
    "HandlerType",
    "InputError",
    "Instance",
    "InstanceStatus",
    "MemoryStore",
    "NotFoundError",
    "Options",
    "PostgresStore",
    "RetryStrategy",
    "Runtime",
    "StepContext",
    "StepRecord",
    "StepStatus",
    "Task",
    "ValidationError",
    "WorkflowDefinition",
    "__version__",
    "build_handlers",
    "build_runtime",
    "close_handlers",
    "hookimpl",
    "load_plugins",
    "load_workflow_file",
    "load_workflow_text",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'floxy_core' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value  # the next lookup is a plain module attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_HOMES))


if TYPE_CHECKING:
    from floxy_core.builder import Builder, Compensation, Options, Task
    from floxy_core.errors import (
        ConflictError,
        DefinitionError,
        FloxyError,
        HandlerError,
        InputError,
        NotFoundError,
        ValidationError,
    )
    from floxy_core.handlers.registry import build_handlers, close_handlers
    from floxy_core.model import Instance, RetryStrategy, StepRecord, WorkflowDefinition
    from floxy_core.plugin_api import HandlerType, hookimpl
    from floxy_core.plugins import load_plugins
    from floxy_core.ports import StepContext
    from floxy_core.runtime import Runtime
    from floxy_core.spec import load_workflow_file, load_workflow_text
    from floxy_core.status import InstanceStatus, StepStatus
    from floxy_core.storage.memory import MemoryStore
    from floxy_core.storage.postgres import PostgresStore
    from floxy_core.wiring import build_runtime
