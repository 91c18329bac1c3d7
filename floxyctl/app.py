"""The floxyctl command line: each command parses, calls floxy_core, renders."""

from __future__ import annotations

import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from typer._click.exceptions import ClickException, NoArgsIsHelpError, UsageError

from floxyctl import exits
from floxyctl.common import (
    fail,
    given_once,
    guard_command,
    plugins,
    run_command,
    set_no_plugins,
    usage_error,
)
from floxyctl.options import NO_PLUGINS_ENV, OPTIONS, RUN_DEFAULTS, OutputFormat

app = typer.Typer(
    name="floxyctl",
    help="Run, validate and manage floxy workflows (YAML sagas with bash and HTTP handlers).",
    epilog=exits.EPILOG,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


class Shell(StrEnum):
    """The shells typer writes completion scripts for."""

    bash = "bash"
    zsh = "zsh"
    fish = "fish"
    powershell = "powershell"
    pwsh = "pwsh"


def _completion(action: str) -> Any:
    """`--show-completion SHELL` / `--install-completion SHELL`, done by typer's own callbacks.

    Typer's `add_completion` declares these as flags that guess the shell from the parent
    process and ignore a shell name after them (`--show-completion zsh` under bash prints the
    bash script), so floxyctl declares them with the shell as a required value, as kubectl,
    helm and gh do, and hands the name to typer, which writes the script and installs it.
    """
    import typer.completion

    callback = getattr(typer.completion, f"{action}_callback")

    def run(ctx: typer.Context, param: Any, value: Shell | None) -> None:
        if value is not None and not ctx.resilient_parsing:
            callback(ctx, param, value.value)

    return run


def _version(value: bool) -> None:
    if value:
        from floxy_core import __version__

        print(f"floxyctl {__version__}")
        raise typer.Exit()


def option(name: str, **extra: Any) -> Any:
    """The typer option for `name` in the shared table (see floxyctl.options)."""
    spec = OPTIONS[name]
    settings = {"help": spec.help, "envvar": spec.envvar, "metavar": spec.metavar, **extra}
    return typer.Option(*spec.flags, **settings)


FileOpt = Annotated[Path, option("file", exists=False, dir_okay=True, show_default=False)]
"""`-f FILE` of register and graph; `run` also takes FILE."""
RunFileOpt = Annotated[
    Path | None, option("file", help="Workflow YAML file (or give it as FILE).", show_default=False)
]
RunFileArg = Annotated[
    Path | None,
    typer.Argument(metavar="FILE", help="Workflow YAML file (or -f FILE).", show_default=False),
]
RunInputOpt = Annotated[str | None, option("input_source", show_default=False)]
OutputOpt = Annotated[OutputFormat, option("output")]


@app.callback()
def _global(
    no_plugins: Annotated[
        bool,
        typer.Option(
            "--no-plugins",
            envvar=NO_PLUGINS_ENV,
            help="Load no third-party plugins (entry-point group `floxy`). "
            "FLOXY_PLUGINS=a,b loads only those.",
        ),
    ] = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_version,
            is_eager=True,
            help="Print floxyctl's version and exit.",
        ),
    ] = False,
    install_completion: Annotated[
        Shell | None,
        typer.Option(
            "--install-completion",
            metavar="SHELL",
            callback=_completion("install"),
            expose_value=False,
            is_eager=True,
            help="Install completion of floxyctl for SHELL (bash, zsh, fish, powershell, pwsh).",
        ),
    ] = None,
    show_completion: Annotated[
        Shell | None,
        typer.Option(
            "--show-completion",
            metavar="SHELL",
            callback=_completion("show"),
            expose_value=False,
            is_eager=True,
            help="Print the completion script of floxyctl for SHELL, to install it by hand.",
        ),
    ] = None,
) -> None:
    set_no_plugins(no_plugins)


def list_plugins(output: OutputOpt = OutputFormat.text) -> None:
    """List loaded plugins, their versions and the handler types they add.

    Example: floxyctl plugins --output json
    """
    loaded = plugins()
    rows = [
        {
            "name": info.name,
            "version": info.version,
            "builtin": info.builtin,
            "handler_types": info.handler_types,
        }
        for info in loaded.infos
    ]
    if output is OutputFormat.json:
        import json

        print(json.dumps({"plugins": rows}, indent=2))
        return
    for row in rows:
        types = ", ".join(row["handler_types"]) or "-"
        kind = " (built-in)" if row["builtin"] else ""
        print(f"{row['name']} {row['version']}{kind}: handler types: {types}")


def version() -> None:
    """Print the floxyctl version."""
    from floxy_core import __version__

    print(f"floxyctl version {__version__}")


def run(
    workflow_file: RunFileArg = None,
    file: RunFileOpt = None,
    input_source: RunInputOpt = RUN_DEFAULTS["input_source"],
    flow: Annotated[str | None, option("flow")] = RUN_DEFAULTS["flow"],
    workers: Annotated[int, option("workers")] = RUN_DEFAULTS["workers"],
    worker_interval: Annotated[str, option("worker_interval")] = RUN_DEFAULTS["worker_interval"],
    completion_timeout: Annotated[str, option("completion_timeout")] = RUN_DEFAULTS[
        "completion_timeout"
    ],
    status_check_interval: Annotated[str, option("status_check_interval")] = RUN_DEFAULTS[
        "status_check_interval"
    ],
    debug: Annotated[bool, option("debug")] = RUN_DEFAULTS["debug"],
    decide: Annotated[list[str] | None, option("decide")] = RUN_DEFAULTS["decide"],
    output: OutputOpt = RUN_DEFAULTS["output"],
) -> None:
    """Run one workflow to completion on an in-memory store (no database needed).

    Example: floxyctl run examples/yaml/hello.yaml -i '{"name": "Ada"}'

    Ctrl-C once cancels the instance (compensations run); twice aborts it.
    """
    from floxyctl.run_cmd import execute

    raise SystemExit(
        execute(
            file=given_once(
                workflow_file,
                file,
                what="workflow file",
                metavar="FILE",
                flag="-f",
                command="floxyctl run",
            ),
            input_source=input_source,
            flow=flow,
            workers=workers,
            worker_interval=worker_interval,
            completion_timeout=completion_timeout,
            status_check_interval=status_check_interval,
            debug=debug,
            decide=decide,
            output=output,
        )
    )


def _register_commands(command: str | None) -> None:
    """All commands, except that `floxyctl run` skips importing the other commands' modules."""
    app.command(epilog=exits.EPILOG)(run)
    if command != "run":
        from floxyctl import spec_cmds

        spec_cmds.register(app)
    app.command("plugins")(list_plugins)
    app.command()(version)
    if command != "run":
        from floxyctl import db_cmds

        db_cmds.register(app)
    _guard_all(app)


def _guard_all(typer_app: typer.Typer) -> None:
    for info in typer_app.registered_commands:
        if info.callback is not None:
            info.callback = guard_command(info.callback)
    for group in typer_app.registered_groups:
        if group.typer_instance is not None:
            _guard_all(group.typer_instance)


def _parse_and_run() -> None:
    """The command line through typer, except that a usage mistake is the one line every
    floxyctl error is (click would print a four-line block), naming the help to read."""
    try:
        code = app(standalone_mode=False)
    except NoArgsIsHelpError as exc:  # `floxyctl dlq`: the help itself, as click gives it
        exc.show()
        raise SystemExit(exc.exit_code) from None
    except UsageError as exc:
        path = exc.ctx.command_path if exc.ctx else _command_path(sys.argv[1:])
        usage_error(_one_line(exc.format_message()), path)
    except ClickException as exc:
        fail(_one_line(exc.format_message()), exc.exit_code)
    except typer.Abort:
        fail("aborted", exits.FAILED)
    raise SystemExit(code if isinstance(code, int) else exits.OK)


def _command_path(argv: list[str]) -> str:
    """`floxyctl` and the (sub)command names that start `argv`, for the few errors click raises
    without a context (`run -f` with no value)."""
    words = ["floxyctl"]
    command: Any = typer.main.get_command(app)
    for token in argv:
        if token.startswith("-"):
            continue
        command = getattr(command, "commands", {}).get(token)
        if command is None:
            break
        words.append(token)
    return " ".join(words)


def _one_line(message: str) -> str:
    """Click's message in floxyctl's voice: one line, lower case first, no closing period."""
    text = " ".join(line.strip() for line in message.splitlines() if line.strip())
    if text[:1].isupper() and text[1:2].islower():
        text = text[0].lower() + text[1:]
    return text.removesuffix(".")


def main() -> None:
    import typer.completion

    # Typer's completion protocol (`_FLOXYCTL_COMPLETE=complete_bash`, which the scripts of
    # --show-completion call): what `add_completion` does first, which registers typer's
    # shell classes with click. typer.main imports the module anyway: this costs no import.
    typer.completion.get_completion_inspect_parameters()
    command = next((a for a in sys.argv[1:] if not a.startswith("-")), None)
    _register_commands(command)
    run_command(_parse_and_run, skip_teardown=command == "run")
