"""Errors raised by floxy.

Every error carries its context as fields so that callers never parse messages::

    FloxyError
    ├── SpecError            one problem in a workflow file (file, line, column, path)
    ├── ValidationError      all SpecErrors of a file, reported together
    ├── DefinitionError      a workflow graph that cannot be built (builder API)
    ├── ConditionError       a condition expression that does not parse or evaluate
    ├── HandlerError         a handler call failed; says whether a retry may help
    │   └── HandlerTimeout   the call ran past its timeout and was killed
    ├── InputError           bad JSON input, bad CLI value
    │   └── UnstorableValue  a value the stores cannot keep (NUL, number out of range...)
    └── StoreError           persistence problems
        ├── NotFoundError    unknown definition, instance, step or DLQ record
        ├── ConflictError    the request does not fit the current state
        └── StoreRejected    the database refused a value (a data error, not an outage)
"""

from __future__ import annotations

from collections.abc import Sequence

from floxy_core.records import record


class FloxyError(Exception):
    """Root of every error floxy raises on purpose."""


@record(frozen=True)
class SpecError:
    """One problem in a workflow file; a value, not an exception, so many can be collected."""

    file: str
    line: int
    column: int
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}:{self.column}"
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"

    def to_json(self) -> dict[str, object]:
        return {
            "file": self.file,
            "line": self.line,
            "column": self.column,
            "path": self.path,
            "message": self.message,
        }


class ValidationError(FloxyError):
    """A workflow file with one or more problems; `errors` lists all of them in file order."""

    def __init__(self, errors: Sequence[SpecError]) -> None:
        self.errors = sorted(errors, key=lambda e: (e.file, e.line, e.column, e.path))
        super().__init__("\n".join(str(e) for e in self.errors))


class DefinitionError(FloxyError):
    """The builder was asked for a graph that cannot exist."""


class ConditionError(FloxyError):
    """A condition expression that does not parse, or fails while evaluating."""

    def __init__(self, message: str, *, expr: str = "", position: int | None = None) -> None:
        self.expr = expr
        self.position = position
        super().__init__(message)


class HandlerError(FloxyError):
    """A handler call failed. `retryable=False` tells the engine a retry cannot help;
    `retry_after_s` asks for the next attempt that many seconds from now instead of the step's
    backoff (bounded by its `retry_max_delay`), as an HTTP `Retry-After` does."""

    def __init__(
        self,
        message: str,
        *,
        retryable: bool = True,
        stderr: str = "",
        retry_after_s: float | None = None,
    ) -> None:
        self.retryable = retryable
        self.stderr = stderr
        self.retry_after_s = retry_after_s
        super().__init__(message)


class HandlerTimeout(HandlerError):
    """The handler ran past its timeout and was stopped."""


class InputError(FloxyError):
    """Input from a user (JSON document, CLI value, duration) that cannot be used."""


class UnstorableValue(InputError):
    """A value neither store can keep; `path` is its JSON path (`$.items[2].name`)."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"{path}: {reason}")


class StoreError(FloxyError):
    """A persistence operation failed."""


class NotFoundError(StoreError):
    """The referenced definition, instance, step or record does not exist."""


class ConflictError(StoreError):
    """The operation does not fit the current state (e.g. cancelling a finished instance)."""


class KeyTaken(ConflictError):
    """A start's idempotency key already started `instance_id` (of `workflow_id`)."""

    def __init__(self, key: str, instance_id: int, workflow_id: str) -> None:
        self.key = key
        self.instance_id = instance_id
        self.workflow_id = workflow_id
        super().__init__(
            f"idempotency key {key!r} already started instance {instance_id} of {workflow_id}"
        )


class StoreRejected(StoreError):
    """The database refused the data of a write (SQLSTATE class 22 or 54): retrying the same
    write cannot help, unlike an outage."""
