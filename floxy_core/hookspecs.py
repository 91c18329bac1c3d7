"""Every hook a plugin may implement (pluggy hook specifications).

Imported only when a plugin beyond the built-ins is loaded; see `floxy_core.plugins`.
"""

from __future__ import annotations

from floxy_core.model import JSON, Instance
from floxy_core.plugin_api import HandlerType, hookspec


class HookSpecs:
    """Every hook a plugin may implement; arguments are passed by name, take only what you use."""

    @hookspec
    def floxy_handler_types(self) -> list[HandlerType]:  # type: ignore[empty-body]
        """Handler types this plugin adds."""

    @hookspec
    def floxy_workflow_starting(self, workflow_id: str, input: JSON) -> None:
        """Before an instance is created; raise to veto the start (the message is shown)."""

    @hookspec
    def floxy_workflow_started(self, instance: Instance) -> None: ...

    @hookspec
    def floxy_workflow_completed(self, instance: Instance, output: JSON) -> None: ...

    @hookspec
    def floxy_workflow_failed(self, instance: Instance, error: str | None) -> None: ...

    @hookspec
    def floxy_workflow_cancelled(self, instance: Instance, error: str | None) -> None: ...

    @hookspec
    def floxy_workflow_aborted(self, instance: Instance, error: str | None) -> None: ...

    @hookspec
    def floxy_workflow_paused(self, instance: Instance, error: str | None) -> None:
        """The instance entered the DLQ."""

    @hookspec
    def floxy_workflow_resumed(self, instance: Instance, step_name: str) -> None:
        """A DLQ record was requeued."""

    @hookspec
    def floxy_step_started(self, instance: Instance, step_name: str, retry_count: int) -> None: ...

    @hookspec
    def floxy_step_completed(self, instance: Instance, step_name: str, output: JSON) -> None: ...

    @hookspec
    def floxy_step_failed(self, instance: Instance, step_name: str, error: str) -> None: ...

    @hookspec
    def floxy_step_retried(
        self, instance: Instance, step_name: str, retry_count: int, error: str
    ) -> None: ...

    @hookspec
    def floxy_step_waiting_decision(self, instance: Instance, step_name: str) -> None: ...

    @hookspec
    def floxy_human_decided(
        self, instance: Instance, step_name: str, decision: str, decided_by: str
    ) -> None: ...

    @hookspec
    def floxy_compensation_started(
        self, instance: Instance, step_name: str, compensation: str | None
    ) -> None: ...

    @hookspec
    def floxy_compensation_finished(
        self, instance: Instance, step_name: str, error: str | None
    ) -> None: ...
