"""`floxyctl logs INSTANCE [STEP]`: what each handler call of an instance printed.

It never migrates (no command but `migrate` does). Each call is a header line —
step, attempt, compensation or not, start time (UTC, ISO-8601), outcome and exit status, duration
— then its stdout and stderr, each labelled; a stream holds the call's last 256 KiB behind a
`[floxy: N earlier bytes cut]` line. `--follow` polls until the instance is terminal, printing
each call as it ends. In json: one document `{"instance_id", "step", "logs": [...]}`, or with
`--follow` one log object per line (JSON Lines) as calls end.
"""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Annotated, Any

import typer

from floxyctl.app import OutputOpt
from floxyctl.common import fail
from floxyctl.db import DbSettings, guard, open_store
from floxyctl.options import OutputFormat

if TYPE_CHECKING:
    from floxy_core.model import CallLog
    from floxy_core.storage.postgres import PostgresStore

FOLLOW_EVERY_S = 0.5
"""How often `--follow` asks for new calls: one indexed query each time."""

_MAX_ID = 2**63 - 1


def logs(
    instance: Annotated[str, typer.Argument(metavar="ID", help="Instance ID.", show_default=False)],
    step: Annotated[
        str | None,
        typer.Argument(metavar="[STEP]", help="Only this step's calls.", show_default=False),
    ] = None,
    follow: Annotated[
        bool,
        typer.Option("--follow", "-F", help="Print calls as they end, until the instance ends."),
    ] = False,
    output: OutputOpt = OutputFormat.text,
    *,
    db: DbSettings,
) -> None:
    """Show the stdout and stderr of each handler call of an instance, oldest first.

    Example: floxyctl logs 42 charge --follow
    """
    instance_id = _parse_id(instance)
    json_output = output is OutputFormat.json
    with open_store(db) as store, guard(db):
        if not follow:
            found = store.get_logs(instance_id, step)
            if json_output:
                from floxyctl import render

                render.print_json(
                    {"instance_id": instance_id, "step": step, "logs": [_doc(g) for g in found]}
                )
                return
            for log in found:
                _print(log)
            if not found:
                print(
                    f"No handler calls logged for instance {instance_id}"
                    + (f" step {step}." if step else "."),
                    file=sys.stderr,
                )
            return
        try:
            _follow(store, instance_id, step, json_output)
        except KeyboardInterrupt:
            raise typer.Exit(130) from None


def _follow(store: PostgresStore, instance_id: int, step: str | None, json_output: bool) -> None:
    """Print new calls until the instance is terminal. A call's log is written with its result,
    so the logs read after a terminal status was seen are all of them."""
    from floxy_core import values

    last = 0
    while True:
        ended = store.get_instance(instance_id).status.terminal
        for log in store.get_logs(instance_id, step, after_id=last):
            last = log.id
            if json_output:
                sys.stdout.write(values.dumps(_doc(log)) + "\n")
            else:
                _print(log)
            sys.stdout.flush()
        if ended:
            return
        time.sleep(FOLLOW_EVERY_S)


def _parse_id(text: str) -> int:
    try:
        value = int(text.strip())
    except ValueError:
        fail(f'invalid instance ID: "{text}"')
    if not 0 < value <= _MAX_ID:
        fail(f'invalid instance ID: "{text}"')
    return value


def _doc(log: CallLog) -> dict[str, Any]:
    """A call's log as `--output json` and the API (`GET /api/instances/{id}/logs`) give it."""
    from floxy_core.report import iso

    return {
        "id": log.id,
        "instance_id": log.instance_id,
        "step_name": log.step_name,
        "handler": log.handler,
        "retry_count": log.retry_count,
        "compensation": log.compensation,
        "started_at": iso(log.started_at),
        "ended_at": iso(log.ended_at),
        "outcome": log.outcome,
        "exit_code": log.exit_code,
        "stdout": log.stdout,
        "stderr": log.stderr,
        "truncated": log.truncated,
    }


def header(log: CallLog) -> str:
    """`==> charge · attempt 2 · 2026-12-02T14:10:45.123Z · failed, exit 3 · 0.12s`"""
    from floxy_core.report import iso

    parts = [log.step_name]
    if log.compensation:
        parts.append(f"compensation ({log.handler})")
    parts.append(f"attempt {log.retry_count + 1}")
    parts.append(iso(log.started_at) or "-")
    outcome = log.outcome
    if log.outcome == "refused":
        outcome = "refused (its lease ran out: the result was not applied)"
    if log.exit_code is not None:
        outcome += f", exit {log.exit_code}"
    parts.append(outcome)
    parts.append(f"{max(0.0, log.ended_at - log.started_at):.2f}s")
    return "==> " + " · ".join(parts)


def _print(log: CallLog) -> None:
    lines = [header(log)]
    for label, text in (("stdout", log.stdout), ("stderr", log.stderr)):
        if text:
            lines.append(f"--- {label}")
            lines.append(text if text.endswith("\n") else text + "\n")
    if not log.stdout and not log.stderr:
        lines.append("(no output)\n")
    sys.stdout.write("\n".join(line.removesuffix("\n") for line in lines) + "\n")
