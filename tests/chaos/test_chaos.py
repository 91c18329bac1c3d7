"""The short form of the chaos run (the long form: `python -m tests.chaos.chaos`, see
docs/reliability.md): about 60 instances of mixed flows on three floxyd processes (one with its
clock 30 s ahead, PostgreSQL with password authentication), a few SIGKILLs, SIGTERMs and
SIGSTOPs, one PostgreSQL restart, a few cancels, aborts and DLQ requeues, HTTP steps and human
steps, then every invariant is checked."""

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
    stats = report.stats
    assert stats.kills + stats.terms + stats.freezes >= 3, table
    assert stats.pg_restarts == 1, table
    assert stats.remote_calls > 0 and stats.remote_unknown == 0, table
    assert stats.decisions, table
    assert report.violations == 0, table
