"""Where the data shipped with floxy lives, in a wheel and in a source checkout alike."""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def _data_dir(name: str) -> Path:
    installed = _PACKAGE / "_data" / name
    if installed.is_dir():
        return installed
    return _PACKAGE.parent / name


def schema_path() -> Path:
    """The JSON Schema of workflow files."""
    return _data_dir("schemas") / "workflow.schema.json"


def migrations_dir() -> Path:
    return _data_dir("migrations_pro")
