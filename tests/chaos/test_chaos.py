"""The short form of the chaos run (the long form: `python -m tests.chaos.chaos`, see
docs/reliability.md): about 60 instances of mixed flows on three floxyd processes, a few SIGKILLs,
one PostgreSQL restart and a few cancels, then every invariant is checked."""

from __future__ import annotations

from pathlib import Path

from tests.chaos.chaos import Config, run


def test_short_chaos_run_keeps_every_invariant(
    chaos_workdir: Path, chaos_keep: bool, chaos_seed: int
) -> None:
    config = Config(
        instances=60,
        duration=50.0,
        daemons=3,
        workers=4,
        kill_every=(5.0, 9.0),
        cancels=3,
        seed=chaos_seed,
        lease="2s",
        settle_timeout=60.0,
        workdir=chaos_workdir,
        keep=chaos_keep,
    )
    report = run(config)
    table = report.table(details=20)
    print(table)
    assert report.stats.kills >= 3, table
    assert report.stats.pg_restarts == 1, table
    assert report.violations == 0, table
