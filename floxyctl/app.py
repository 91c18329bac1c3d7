"""The floxyctl command line: each command parses, calls floxy_core, renders."""

from __future__ import annotations

import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, NoReturn

import typer

from floxyctl import exits

app = typer.Typer(
    name="floxyctl",
    help="Run, validate and manage floxy workflows (YAML sagas with bash and HTTP handlers).",
    epilog=exits.EPILOG,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


class OutputFormat(StrEnum):
    text = "text"
    json = "json"


FileOpt = Annotated[
    Path,
    typer.Option(
        "-f",
        "--file",
        help="Workflow YAML file.",
        exists=False,
        dir_okay=True,
        show_default=False,
    ),
]
OutputOpt = Annotated[
    OutputFormat,
    typer.Option("--output", help="text for people; json for programs (one document on stdout)."),
]


def fail(message: str, code: int = exits.USAGE) -> NoReturn:
    """Print one clear line on stderr and exit with a documented code."""
    print(f"floxyctl: error: {message}", file=sys.stderr)
    raise typer.Exit(code)


@app.command()
def version() -> None:
    """Print the floxyctl version."""
    from floxy_core import __version__

    print(f"floxyctl version {__version__}")


def _register_commands() -> None:
    from floxyctl import run_cmd, spec_cmds

    run_cmd.register(app)
    spec_cmds.register(app)


def main() -> None:
    _register_commands()
    try:
        app()
    except KeyboardInterrupt:
        print("floxyctl: interrupted", file=sys.stderr)
        sys.exit(130)
