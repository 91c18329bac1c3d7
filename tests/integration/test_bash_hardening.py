"""Bash handler hardening against real bash: input never runs code, credentials never reach the
script, and a spewing handler costs floxy little CPU (issue 13; DECISIONS.md "Bash handler
environment")."""

from __future__ import annotations

import json
import resource
import shutil
import time
from pathlib import Path

import pytest

from floxy_core.errors import HandlerError, HandlerTimeout
from floxy_core.handlers.bash import BashHandler
from tests.support import step_context as ctx

DUMP_ENV = (
    'env -0 | jq -Rs \'split("\\u0000") | map(select(length > 0) | index("=") as $i'
    " | {key: .[:$i], value: .[$i+1:]}) | from_entries'"
)


def attacks(markers: Path) -> dict[str, tuple[str, dict[str, str]]]:
    """Program → (a script that only reads $INPUT through it, input fields that ran `id`)."""
    out = {
        "python3": (
            """python3 -c 'import json, os; print(json.dumps(json.loads(os.environ["INPUT"])))'""",
            {
                "pythonwarnings": "all:0:antigravity.x:0:0",
                "browser": f'sh -c "id > {markers}/python3" #%s',
            },
        ),
        "perl": (
            """perl -MJSON::PP -e 'print encode_json(decode_json($ENV{INPUT}))'""",
            {"perl5opt": f"-Mbase;system(q(id > {markers}/perl));"},
        ),
    }
    if shutil.which("node"):
        evil = markers.parent / "evil.js"
        evil.write_text(f"require('fs').writeFileSync('{markers}/node', 'ran');\n")
        out["node"] = (
            "node -e 'console.log(process.env.INPUT)'",
            {"node_options": f"--require {evil}"},
        )
    return out


@pytest.mark.parametrize("program", ["python3", "perl", "node"])
def test_input_fields_do_not_run_code_through_the_programs_a_script_calls(
    tmp_path: Path, program: str
) -> None:
    assert program != "node" or shutil.which("node"), "node is missing (test.sh installs it)"
    markers = tmp_path / "markers"
    markers.mkdir()
    script, fields = attacks(markers)[program]
    data = {"order": 7, **fields}
    assert BashHandler("h", script)(ctx(), data) == data
    assert list(markers.iterdir()) == [], f"input fields ran `id` through {program}"


def test_by_default_a_field_is_exported_when_the_script_names_it(tmp_path: Path) -> None:
    data = {"order_id": "o-1", "amount": 5, "pythonwarnings": "error", "browser": "x"}
    env = BashHandler("h", f'{DUMP_ENV} # uses "$ORDER_ID" and ${{AMOUNT}}')(ctx(), data)
    assert env["ORDER_ID"] == "o-1"
    assert env["AMOUNT"] == "5"
    assert "PYTHONWARNINGS" not in env and "BROWSER" not in env
    assert json.loads(env["INPUT"]) == data

    script = tmp_path / "dump.sh"
    script.write_text(f"# reads $AMOUNT\n{DUMP_ENV}\n")
    env = BashHandler("h", str(script))(ctx(), data)
    assert env["AMOUNT"] == "5"
    assert "ORDER_ID" not in env and "PYTHONWARNINGS" not in env
    script.write_text(f"# reads $ORDER_ID now\n{DUMP_ENV}\n")  # an edited file is read again
    assert BashHandler("h", str(script))(ctx(), data).get("ORDER_ID") == "o-1"


def test_input_env_list_narrows_and_false_turns_it_off() -> None:
    data = {"order": "o", "amount": 3, "other": "x", "ld_preload": "/evil.so"}
    listed = BashHandler("h", DUMP_ENV, input_env=["ORDER", "AMOUNT", "LD_PRELOAD"])(ctx(), data)
    assert (listed["ORDER"], listed["AMOUNT"]) == ("o", "3")
    assert "OTHER" not in listed
    assert "LD_PRELOAD" not in listed  # the guards hold whatever the list says
    named = f"{DUMP_ENV} # $ORDER $AMOUNT $OTHER"
    off = BashHandler("h", named, input_env=False)(ctx(), data)
    assert not {"ORDER", "AMOUNT", "OTHER"} & set(off)
    assert json.loads(off["INPUT"]) == data


def test_credentials_and_floxy_settings_do_not_reach_the_script(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    secrets = {
        "FLOXY_DSN": "postgresql://u:pw@h/db",
        "FLOXY_DB_PASSWORD": "pw",
        "FLOXY_DB_PASSWORD_FILE": "/run/secrets/pw",
        "PGPASSWORD": "pw",
        "PG_PASSWORD": "pw",
        "PGPASSFILE": "/root/.pgpass",
    }
    for name, value in secrets.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("MY_API_TOKEN", "handlers-own")
    env = BashHandler("h", DUMP_ENV)(ctx(), {})
    assert not set(secrets) & set(env)
    assert env["MY_API_TOKEN"] == "handlers-own"


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def test_a_handler_spewing_to_stderr_costs_floxy_little_cpu() -> None:
    """Perl writes two bytes per write(2) as fast as it can for 2 s; reading each write at once
    (and trimming a full buffer by copying it) cost a third of a core here, a whole one on a
    faster machine. RUSAGE_SELF counts this process only: the handler's time is its own."""
    handler = BashHandler(
        "h", "exec perl -e 'print STDERR qq(x\\n) while 1'", max_stderr_bytes=4096
    )
    cpu, wall = _cpu_s(), time.monotonic()
    with pytest.raises(HandlerTimeout) as info:
        handler(ctx(timeout_s=2.0), None)
    cpu, wall = _cpu_s() - cpu, time.monotonic() - wall
    assert wall >= 2.0
    assert cpu < 0.15 * wall, f"floxy used {cpu:.2f}s of CPU in {wall:.2f}s"
    stderr = info.value.stderr or ""
    assert stderr.startswith("[floxy: ") and " earlier bytes of stderr cut]\n" in stderr
    assert stderr.endswith("x\n") and len(stderr) < 4096 + 100


def test_large_output_still_arrives_whole_and_fast() -> None:
    """Coalescing small writes must not slow a handler that writes a lot, or a quick one."""
    big = BashHandler("h", "head -c 8000000 /dev/zero | tr '\\0' a | jq -Rs .")
    started = time.monotonic()
    assert big(ctx(), None) == "a" * 8_000_000
    quick = BashHandler("h", "echo '{}'")
    times = []
    for _ in range(5):
        t = time.monotonic()
        assert quick(ctx(), None) == {}
        times.append(time.monotonic() - t)
    assert min(times) < 0.02, times  # the exit wakes the reader: no pause after the last write
    assert time.monotonic() - started < 30


def test_stderr_of_a_failed_call_is_kept_in_order() -> None:
    with pytest.raises(HandlerError) as info:
        script = "for i in 1 2 3; do echo line$i >&2; sleep 0.01; done; exit 3"
        BashHandler("h", script)(ctx(), None)
    assert info.value.stderr == "line1\nline2\nline3\n"
