"""docs/database-settings.md is the one table of both programs' settings: it matches the code."""

from __future__ import annotations

from pathlib import Path

from floxy_core import dbconfig
from floxyd.config import ENV_VARS

DOC = (Path(__file__).resolve().parents[2] / "docs" / "database-settings.md").read_text()


def test_every_password_source_is_a_row_in_its_order() -> None:
    rows = [line for line in DOC.splitlines() if line.startswith("| ")]
    order = []
    for source, _program, _note in dbconfig.PASSWORD_SOURCES:
        hits = [i for i, row in enumerate(rows) if row.startswith(f"| {source} |")]
        assert hits, f"{source!r} has no row in docs/database-settings.md"
        order.append(hits[0])
    assert order == sorted(order)


def test_every_part_variable_and_floxyd_flag_is_in_the_table() -> None:
    for var, flag, _text in ENV_VARS:
        if var.startswith("FLOXY_DB_") and flag:
            assert f"`{var}`" in DOC and f"`{flag}`" in DOC, var
