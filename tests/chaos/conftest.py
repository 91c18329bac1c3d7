"""Fixtures of the chaos tests: where a run works, and whether it keeps its files.

`FLOXY_CHAOS_KEEP=1` keeps the work directory (workflow file, floxyd logs, handler ledgers and a
`state.json` dump of every instance) under pytest's temporary directory for inspection;
`FLOXY_CHAOS_SEED=N` replays a run with another seed.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture
def chaos_workdir(tmp_path: Path) -> Path:
    path = tmp_path / "chaos"
    path.mkdir()
    return path


@pytest.fixture
def chaos_keep() -> bool:
    return os.environ.get("FLOXY_CHAOS_KEEP", "") not in ("", "0")


@pytest.fixture
def chaos_seed() -> int:
    return int(os.environ.get("FLOXY_CHAOS_SEED", "20240601"))
