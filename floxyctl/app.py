"""The floxyctl command line: each command parses, calls floxy_core, renders."""

from __future__ import annotations

import logging
import os
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, NoReturn

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
InputOpt = Annotated[
    Path | None,
    typer.Option(
        "-i",
        "--input",
        help="JSON input file. Default: stdin when it is not a terminal, else {}.",
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


class _Options:
    no_plugins = False
    plugins: Any = None


@app.callback()
def _global(
    no_plugins: Annotated[
        bool,
        typer.Option(
            "--no-plugins",
            envvar="FLOXY_NO_PLUGINS",
            help="Load no third-party plugins (entry-point group `floxy`). "
            "FLOXY_PLUGINS=a,b loads only those.",
        ),
    ] = False,
) -> None:
    _Options.no_plugins = no_plugins


def plugins() -> Any:
    """The loaded plugins (built-ins plus installed ones), loaded once per process."""
    if _Options.plugins is None:
        from floxy_core.errors import FloxyError
        from floxy_core.plugins import load_plugins

        try:
            _Options.plugins = load_plugins(no_plugins=_Options.no_plugins)
        except FloxyError as exc:
            fail(str(exc))
    return _Options.plugins


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


def _register_commands(argv: list[str]) -> None:
    """All commands, except that `floxyctl run` skips importing the database commands."""
    from floxyctl import run_cmd

    run_cmd.register(app)
    command = next((a for a in argv if not a.startswith("-")), None)
    if command != "run":
        from floxyctl import spec_cmds

        spec_cmds.register(app)
    app.command("plugins")(list_plugins)
    app.command()(version)
    if command != "run":
        from floxyctl import db_cmds

        db_cmds.register(app)


class _OneLine(logging.Formatter):
    """Library warnings as one line each; the traceback only with FLOXY_DEBUG set."""

    def format(self, record: logging.LogRecord) -> str:
        text = f"floxyctl: {record.levelname.lower()}: {record.getMessage()}"
        if record.exc_info and record.exc_info[1] is not None:
            if os.environ.get("FLOXY_DEBUG"):
                return text + "\n" + self.formatException(record.exc_info)
            error = record.exc_info[1]
            text += f": {type(error).__name__}: {error}"
        return text


def _setup_logging() -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_OneLine())
    root = logging.getLogger("floxy")
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    root.propagate = False


def main() -> None:
    _setup_logging()
    _register_commands(sys.argv[1:])
    try:
        app()
    except KeyboardInterrupt:
        print("floxyctl: interrupted", file=sys.stderr)
        sys.exit(130)
