"""Every example in examples/yaml runs as a real `floxyctl run` and ends as its comment says.

Each run is a subprocess started from a temporary directory (not the repository), so relative
script paths must resolve against the YAML file. stdin is /dev/null (not a terminal).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from ruamel.yaml import YAML

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "yaml"
INPUTS = EXAMPLES / "inputs"
SCHEMA = ROOT / "schemas" / "workflow.schema.json"
SCHEMA_LINE = "# yaml-language-server: $schema=../../schemas/workflow.schema.json"

EXPECTED_EXAMPLES = {
    "hello.yaml",
    "order_saga.yaml",
    "data_pipeline.yaml",
    "savepoint.yaml",
    "fork_join.yaml",
    "fork_any.yaml",
    "dlq.yaml",
    "human_approval.yaml",
    "scripts.yaml",
    "retries.yaml",
    "reference_format.yaml",
}
ALL_EXAMPLES = sorted(p.name for p in EXAMPLES.glob("*.yaml"))


def _floxyctl() -> list[str]:
    script = Path(sys.executable).with_name("floxyctl")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "floxyctl"]


FLOXYCTL = _floxyctl()


class Run:
    def __init__(self, proc: subprocess.CompletedProcess[str]) -> None:
        self.rc = proc.returncode
        self.stdout = proc.stdout
        self.stderr = proc.stderr
        self._doc: dict[str, Any] | None = None

    @property
    def doc(self) -> dict[str, Any]:
        if self._doc is None:
            try:
                self._doc = json.loads(self.stdout)
            except json.JSONDecodeError as exc:  # pragma: no cover - diagnostic only
                raise AssertionError(
                    f"stdout is not one JSON document ({exc}):\n{self.stdout}\n"
                    f"stderr:\n{self.stderr}"
                ) from exc
        return self._doc

    @property
    def status(self) -> str:
        return str(self.doc["status"])

    @property
    def output(self) -> Any:
        return self.doc["output"]

    def step(self, name: str) -> dict[str, Any]:
        rows: list[dict[str, Any]] = [s for s in self.doc["steps"] if s["name"] == name]
        assert len(rows) == 1, f"expected one row for step {name!r}, got {rows}"
        return rows[0]

    def statuses(self) -> dict[str, str]:
        return {s["name"]: s["status"] for s in self.doc["steps"]}

    def events(self, type_: str, **payload: Any) -> list[dict[str, Any]]:
        return [
            e
            for e in self.doc["events"]
            if e["type"] == type_ and all(e["payload"].get(k) == v for k, v in payload.items())
        ]

    def compensated(self) -> list[str]:
        """Steps whose compensation started, in order."""
        return [e["step"] for e in self.events("step_started", reason="compensation")]

    def __repr__(self) -> str:  # shown by pytest when an assertion fails
        return f"Run(rc={self.rc}, stderr={self.stderr[-2000:]!r}, stdout={self.stdout[-3000:]!r})"


def floxyctl_run(
    cwd: Path,
    example: str,
    *args: str,
    input_file: Path | None = None,
    input_data: dict[str, Any] | None = None,
    output: str = "json",
) -> Run:
    cmd = [*FLOXYCTL, "run", "-f", str(EXAMPLES / example), "--output", output, *args]
    if input_data is not None:
        input_file = cwd / f"input-{len(list(cwd.glob('input-*.json')))}.json"
        input_file.write_text(json.dumps(input_data))
    if input_file is not None:
        cmd += ["-i", str(input_file)]
    proc = subprocess.run(
        cmd,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return Run(proc)


def load_input(name: str, **extra: Any) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((INPUTS / name).read_text())
    data.update(extra)
    return data


def read_ledger(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


# --------------------------------------------------------------------------------------------
# The files themselves


def test_all_documented_examples_exist() -> None:
    assert set(ALL_EXAMPLES) >= EXPECTED_EXAMPLES, EXPECTED_EXAMPLES - set(ALL_EXAMPLES)


@pytest.mark.parametrize("example", ALL_EXAMPLES)
def test_example_starts_with_schema_line_and_doc_comment(example: str) -> None:
    lines = (EXAMPLES / example).read_text().splitlines()
    assert lines[0] == SCHEMA_LINE
    # a comment block that says how to run it and how it ends
    header = []
    for line in lines[1:]:
        if not line.startswith("#"):
            break
        header.append(line)
    text = "\n".join(header)
    assert f"floxyctl run -f examples/yaml/{example}" in text
    assert "exit" in text and "Documented end" in text


@pytest.mark.parametrize("example", ALL_EXAMPLES)
def test_example_matches_json_schema(example: str) -> None:
    schema = json.loads(SCHEMA.read_text())
    doc = YAML(typ="safe").load((EXAMPLES / example).read_text())
    errors = sorted(
        jsonschema.Draft202012Validator(schema).iter_errors(doc), key=lambda e: list(e.path)
    )
    assert not errors, [f"{list(e.path)}: {e.message}" for e in errors]


@pytest.mark.parametrize("example", ALL_EXAMPLES)
def test_floxyctl_validate_accepts_example(example: str, tmp_path: Path) -> None:
    proc = subprocess.run(
        [*FLOXYCTL, "validate", "-f", str(EXAMPLES / example)],
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_scripts_are_plain_files_not_executable() -> None:
    scripts = sorted((EXAMPLES / "scripts").glob("*.sh"))
    assert len(scripts) >= 3
    for script in scripts:
        assert script.stat().st_mode & 0o111 == 0, f"{script.name} must not be executable"
    text = (EXAMPLES / "scripts.yaml").read_text()
    for script in scripts:
        assert f"scripts/{script.name}" in text


def test_every_input_file_is_json_and_used() -> None:
    inputs = sorted(INPUTS.glob("*.json"))
    assert inputs
    texts = "\n".join(p.read_text() for p in EXAMPLES.glob("*.yaml"))
    for p in inputs:
        json.loads(p.read_text())
        assert f"inputs/{p.name}" in texts, f"{p.name} is not mentioned by any example"


# --------------------------------------------------------------------------------------------
# hello.yaml


def test_hello_text_output_is_the_readme_first_command(tmp_path: Path) -> None:
    run = floxyctl_run(tmp_path, "hello.yaml", output="text")
    assert run.rc == 0, run
    assert "completed" in run.stdout
    assert "Hello, world!" in run.stdout


def test_hello_passes_data_through_three_steps(tmp_path: Path) -> None:
    run = floxyctl_run(tmp_path, "hello.yaml")
    assert run.rc == 0, run
    assert run.status == "completed"
    assert [s["name"] for s in run.doc["steps"]] == ["greet", "shout", "sign"]
    assert set(run.statuses().values()) == {"completed"}
    assert run.output == {
        "name": "world",
        "greeting": "Hello, world!",
        "hops": 3,
        "loud": "HELLO, WORLD!",
        "signed_by": "floxy",
    }
    # each step's input is its predecessor's output
    assert run.step("shout")["input"] == run.step("greet")["output"]
    assert run.step("sign")["input"] == run.step("shout")["output"]

    ada = floxyctl_run(tmp_path, "hello.yaml", input_data={"name": "Ada"})
    assert ada.rc == 0, ada
    assert ada.output["loud"] == "HELLO, ADA!"


# --------------------------------------------------------------------------------------------
# order_saga.yaml


def test_order_saga_ok(tmp_path: Path) -> None:
    ledger = tmp_path / "ledger.txt"
    run = floxyctl_run(
        tmp_path, "order_saga.yaml", input_data=load_input("order_ok.json", ledger=str(ledger))
    )
    assert run.rc == 0, run
    assert run.status == "completed"
    assert run.statuses() == {
        "reserve_stock": "completed",
        "charge_payment": "completed",
        "ship_order": "completed",
    }
    assert run.output["tracking"] == "TRK-A-1001"
    assert run.output["reservation"] == "R-A-1001"
    assert run.output["payment"] == "P-A-1001"
    assert run.compensated() == []
    assert read_ledger(ledger) == [
        "reserve_stock A-1001",
        "charge_payment A-1001 31.8",
        "ship_order A-1001 attempt=0",
    ]


def test_order_saga_ok_input_file_as_documented(tmp_path: Path) -> None:
    run = floxyctl_run(tmp_path, "order_saga.yaml", input_file=INPUTS / "order_ok.json")
    assert run.rc == 0, run
    assert run.output["shipped"] is True


def test_order_saga_fail_rolls_back_in_reverse(tmp_path: Path) -> None:
    ledger = tmp_path / "ledger.txt"
    run = floxyctl_run(
        tmp_path, "order_saga.yaml", input_data=load_input("order_fail.json", ledger=str(ledger))
    )
    assert run.rc == 1, run
    assert run.status == "failed"
    assert "courier rejected parcel for order A-1002" in run.doc["error"]
    ship = run.step("ship_order")
    assert "courier rejected parcel" in (ship["error"] or "")
    assert ship["retry_count"] == 2  # max_retries: 1 => two calls
    assert len(run.events("step_retry")) == 1
    for name in ("reserve_stock", "charge_payment"):
        assert run.step(name)["status"] == "rolled_back"
    # the failed step's own on_failure first, then the completed steps in reverse
    assert run.compensated() == ["ship_order", "charge_payment", "reserve_stock"]
    assert read_ledger(ledger) == [
        "reserve_stock A-1002",
        "charge_payment A-1002 31.8",
        "ship_order A-1002 attempt=0",
        "ship_order A-1002 attempt=1",
        "cancel_shipment A-1002 undoing=ship_order compensation=true",
        "refund_payment A-1002 undoing=charge_payment compensation=true",
        "release_stock A-1002 undoing=reserve_stock compensation=true",
    ]


# --------------------------------------------------------------------------------------------
# data_pipeline.yaml


def test_data_pipeline_true_branch_parallel_and_join(tmp_path: Path) -> None:
    run = floxyctl_run(tmp_path, "data_pipeline.yaml", input_file=INPUTS / "pipeline_batch.json")
    assert run.rc == 0, run
    assert run.status == "completed"
    assert run.output == {
        "batch": "2024-06-01",
        "loaded": 4,
        "total": 10,
        "total_with_tax": 12,
        "sources": ["clean", "enrich"],
    }
    assert "report_empty" not in run.statuses()
    for name in ("extract", "has_records", "transform", "clean", "enrich", "transform_join"):
        assert run.step(name)["status"] == "completed", name
    assert run.step("transform_join")["type"] == "join"
    extracted = run.step("extract")["output"]
    assert extracted["count"] == 4
    # parallel tasks both receive the parallel step's input
    assert run.step("clean")["input"] == extracted
    assert run.step("enrich")["input"] == extracted
    load_input_ = run.step("load")["input"]
    assert sorted(load_input_["completed"]) == ["clean", "enrich"]
    assert load_input_["failed"] == []
    assert load_input_["strategy"] == "all"
    assert load_input_["status"] == "success"
    assert load_input_["outputs"] == {
        "clean": run.step("clean")["output"],
        "enrich": run.step("enrich")["output"],
    }


def test_data_pipeline_else_branch(tmp_path: Path) -> None:
    run = floxyctl_run(tmp_path, "data_pipeline.yaml", input_file=INPUTS / "pipeline_empty.json")
    assert run.rc == 0, run
    assert run.status == "completed"
    assert run.output == {"batch": "2024-06-02", "loaded": 0, "note": "nothing to load"}
    assert run.statuses() == {
        "extract": "completed",
        "has_records": "completed",
        "report_empty": "completed",
    }
    assert run.events("condition_check", step_name="has_records", result=False)


# --------------------------------------------------------------------------------------------
# savepoint.yaml


def test_savepoint_limits_rollback(tmp_path: Path) -> None:
    ledger = tmp_path / "deploy.txt"
    run = floxyctl_run(tmp_path, "savepoint.yaml", input_data={"ledger": str(ledger)})
    assert run.rc == 1, run
    assert run.status == "failed"
    assert "health check failed" in run.doc["error"]
    assert run.statuses() == {
        "build_image": "completed",
        "push_image": "completed",
        "image_published": "completed",
        "migrate_db": "rolled_back",
        "roll_out": "rolled_back",
        "health_check": "rolled_back",
    }
    assert run.step("image_published")["type"] in {"savepoint", "save_point"}
    assert "health check failed" in (run.step("health_check")["error"] or "")
    assert run.compensated() == ["roll_out", "migrate_db"]
    assert read_ledger(ledger) == [
        "build_image",
        "push_image",
        "migrate_db",
        "roll_out",
        "health_check",
        "roll_back_release",
        "revert_migration",
    ]


def test_savepoint_healthy_deploy_completes(tmp_path: Path) -> None:
    run = floxyctl_run(tmp_path, "savepoint.yaml", input_file=INPUTS / "deploy_healthy.json")
    assert run.rc == 0, run
    assert run.status == "completed"
    assert run.output["live"] is True
    assert run.output["registry"] == "registry.example.com/shop-web:1.4.0"
    assert set(run.statuses().values()) == {"completed"}


# --------------------------------------------------------------------------------------------
# fork_join.yaml / fork_any.yaml


def test_fork_join_all(tmp_path: Path) -> None:
    run = floxyctl_run(tmp_path, "fork_join.yaml", input_file=INPUTS / "order_ok.json")
    assert run.rc == 0, run
    assert run.status == "completed"
    assert set(run.statuses().values()) == {"completed"}
    assert run.step("fulfil")["type"] == "fork"
    join = run.step("fulfil_done")
    assert join["type"] == "join"
    checked = run.step("check_order")["output"]
    assert run.step("pick_items")["input"] == checked
    assert run.step("create_invoice")["input"] == checked
    assert run.step("pack_parcel")["input"] == run.step("pick_items")["output"]
    notify_in = run.step("notify_customer")["input"]
    assert sorted(notify_in["completed"]) == ["email_invoice", "pack_parcel"]
    assert notify_in["strategy"] == "all"
    assert notify_in["failed"] == []
    assert set(notify_in["outputs"]) == {"pack_parcel", "email_invoice"}
    assert run.output == {
        "order_id": "A-1001",
        "message": "Parcel PCL-A-1001 (2 x MUG-42) is on its way; "
        "invoice INV-A-1001 sent to customer@example.com",
    }


def test_fork_any_first_answer_wins(tmp_path: Path) -> None:
    run = floxyctl_run(tmp_path, "fork_any.yaml")
    assert run.rc == 0, run
    assert run.status == "completed"
    assert run.output == {
        "booked_with": "primary",
        "parcel": "PCL-A-1001",
        "price": 7.5,
        "unavailable": [],
    }
    book_in = run.step("book_courier")["input"]
    assert book_in["strategy"] == "any"
    assert book_in["completed"] == ["quote_primary"]
    assert len(run.events("step_started", step_name="book_courier")) == 1
    assert run.step("quote_backup")["status"] == "completed"


def test_fork_any_survives_a_failed_branch(tmp_path: Path) -> None:
    run = floxyctl_run(tmp_path, "fork_any.yaml", input_file=INPUTS / "carrier_down.json")
    assert run.rc == 0, run
    assert run.status == "completed"
    assert run.step("quote_primary")["status"] == "failed"
    assert "503" in (run.step("quote_primary")["error"] or "")
    book_in = run.step("book_courier")["input"]
    assert book_in["completed"] == ["quote_backup"]
    assert book_in["failed"] == ["quote_primary"]
    assert run.output == {
        "booked_with": "backup",
        "parcel": "PCL-A-1003",
        "price": 9.9,
        "unavailable": ["quote_primary"],
    }


# --------------------------------------------------------------------------------------------
# dlq.yaml


def test_dlq_pauses_instead_of_rolling_back(tmp_path: Path) -> None:
    run = floxyctl_run(tmp_path, "dlq.yaml")
    assert run.rc == 4, run
    assert run.status == "dlq"
    assert "connection refused" in run.doc["error"]
    assert run.statuses() == {
        "fetch_feed": "completed",
        "parse_feed": "completed",
        "import_rows": "paused",
    }
    assert run.step("import_rows")["retry_count"] == 2
    assert "connection refused (attempt 2)" in run.step("import_rows")["error"]
    assert run.compensated() == []
    (record,) = run.doc["dlq"]
    assert record["step"] == "import_rows"
    assert "connection refused" in record["error"]


def test_dlq_text_output_says_dlq(tmp_path: Path) -> None:
    run = floxyctl_run(tmp_path, "dlq.yaml", output="text")
    assert run.rc == 4, run
    assert "DLQ" in run.stdout + run.stderr


# --------------------------------------------------------------------------------------------
# human_approval.yaml


def test_human_confirm_completes(tmp_path: Path) -> None:
    run = floxyctl_run(tmp_path, "human_approval.yaml", "--decide", "approve=confirm")
    assert run.rc == 0, run
    assert run.status == "completed"
    assert run.output == {"refund": "RF-A-1001", "amount": 120, "paid": True}
    assert run.step("approve")["type"] == "human"
    # the step after a confirmed human step receives the human step's input
    assert run.step("pay_refund")["input"] == run.step("prepare_refund")["output"]
    assert len(run.events("step_started", step_name="pay_refund")) == 1


def test_human_reject_aborts(tmp_path: Path) -> None:
    run = floxyctl_run(tmp_path, "human_approval.yaml", "--decide", "approve=reject")
    assert run.rc == 5, run
    assert run.status == "aborted"
    assert run.step("approve")["status"] == "rejected"
    assert "pay_refund" not in run.statuses()
    assert run.step("prepare_refund")["status"] == "completed"
    assert run.compensated() == []


def test_human_without_decision_pauses(tmp_path: Path) -> None:
    run = floxyctl_run(tmp_path, "human_approval.yaml")
    assert run.rc == 4, run
    assert run.status == "running"
    assert run.step("approve")["status"] == "waiting_decision"
    assert "pay_refund" not in run.statuses()


# --------------------------------------------------------------------------------------------
# scripts.yaml


def test_scripts_relative_paths_and_jq_output(tmp_path: Path) -> None:
    run = floxyctl_run(tmp_path, "scripts.yaml", input_file=INPUTS / "cart.json")
    assert run.rc == 0, run
    assert run.status == "completed"
    assert set(run.statuses().values()) == {"completed"}
    priced = run.step("price_cart")["output"]
    assert priced["subtotal_cents"] == 4380
    assert priced["tax_cents"] == 876
    assert priced["total_cents"] == 5256
    assert priced["lines"][0] == {"sku": "MUG-42", "qty": 2, "cents": 3180}
    out = run.output
    assert re.fullmatch(r"INV-\d{4}-\S+", out["invoice"]), out
    assert {k: v for k, v in out.items() if k != "invoice"} == {
        "customer": "Ada",
        "lines": 2,
        "total": "52.56",
        "currency": "EUR",
    }


def test_scripts_empty_cart_fails(tmp_path: Path) -> None:
    run = floxyctl_run(tmp_path, "scripts.yaml")
    assert run.rc == 1, run
    assert run.status == "failed"
    assert "cart is empty" in run.doc["error"]
    assert len(run.events("step_started", step_name="validate_cart")) == 1
    assert "price_cart" not in run.statuses()


# --------------------------------------------------------------------------------------------
# retries.yaml


def _at(event: dict[str, Any]) -> float:
    from datetime import datetime

    return datetime.fromisoformat(event["at"].replace("Z", "+00:00")).timestamp()


def test_retries_exponential_backoff(tmp_path: Path) -> None:
    run = floxyctl_run(tmp_path, "retries.yaml", "--flow", "currency_sync")
    assert run.rc == 0, run
    assert run.status == "completed"
    assert run.output == {"base": "EUR", "usd": 1.08, "attempts": 3, "stored": True}
    assert run.step("fetch_rates")["retry_count"] == 2
    retries = run.events("step_retry", step_name="fetch_rates")
    assert [e["payload"]["retry_count"] for e in retries] == [1, 2]
    starts = run.events("step_started", step_name="fetch_rates")
    assert len(starts) == 3
    # exponential: 50 ms before the 2nd call, 100 ms before the 3rd (lower bounds)
    assert _at(starts[1]) - _at(retries[0]) >= 0.045
    assert _at(starts[2]) - _at(retries[1]) >= 0.095
    assert run.step("store_rates")["retry_count"] == 0
    assert len(run.events("step_started", step_name="store_rates")) == 1


def test_retries_no_idempotent_called_once(tmp_path: Path) -> None:
    run = floxyctl_run(tmp_path, "retries.yaml", "--flow", "charge_once")
    assert run.rc == 1, run
    assert run.status == "failed"
    assert "card processor timed out (call 1)" in run.doc["error"]
    assert run.events("step_retry") == []
    assert len(run.events("step_started", step_name="charge_card")) == 1


def test_retries_needs_flow_choice(tmp_path: Path) -> None:
    run = floxyctl_run(tmp_path, "retries.yaml", output="text")
    assert run.rc == 2, run
    assert "--flow" in run.stderr


# --------------------------------------------------------------------------------------------
# reference_format.yaml

REFERENCE_STEP_KEYS = {
    "task": {
        "name",
        "type",
        "handler",
        "on_failure",
        "max_retries",
        "no_idempotent",
        "delay",
        "retry_delay",
        "retry_strategy",
        "timeout",
        "metadata",
    },
    "parallel": {"name", "type", "tasks"},
    "condition": {"name", "type", "expr", "condition", "else"},
}
DURATION_KEYS = {"delay", "retry_delay", "timeout"}


def _check_reference_steps(steps: list[Any], seen: set[str]) -> None:
    for step in steps:
        if isinstance(step, str):
            seen.add("shorthand")
            continue
        kind = step.get("type", "task")
        assert kind in REFERENCE_STEP_KEYS, f"not a reference step type: {kind}"
        seen.add(kind)
        assert set(step) <= REFERENCE_STEP_KEYS[kind], set(step) - REFERENCE_STEP_KEYS[kind]
        for key in DURATION_KEYS & set(step):
            assert type(step[key]) is int, f"{step['name']}.{key} must be integer milliseconds"
            seen.add("int_duration")
        if "on_failure" in step:
            assert isinstance(step["on_failure"], str)
            seen.add("on_failure")
        if "retry_strategy" in step:
            seen.add("retry_strategy")
        if "metadata" in step:
            seen.add("metadata")
        if kind == "parallel":
            _check_reference_steps(step["tasks"], seen)
        if kind == "condition" and "else" in step:
            seen.add("else")
            _check_reference_steps(step["else"], seen)


def test_reference_format_uses_only_reference_keys() -> None:
    doc = YAML(typ="safe").load((EXAMPLES / "reference_format.yaml").read_text())
    assert set(doc) <= {"tls", "handlers", "flows"}
    for handler in doc["handlers"]:
        assert set(handler) <= {"name", "exec", "tls"}
        # the reference treats a one-line exec as a script path
        assert "\n" in handler["exec"], handler["name"]
    for flow in doc["flows"]:
        assert set(flow) <= {"name", "steps"}
        seen: set[str] = set()
        _check_reference_steps(flow["steps"], seen)
        assert seen >= {
            "shorthand",
            "task",
            "parallel",
            "condition",
            "else",
            "on_failure",
            "int_duration",
            "retry_strategy",
            "metadata",
        }


def test_reference_format_true_branch(tmp_path: Path) -> None:
    run = floxyctl_run(tmp_path, "reference_format.yaml", input_file=INPUTS / "reference_big.json")
    assert run.rc == 0, run
    assert run.status == "completed"
    assert run.output == {"order_id": "A-2001", "shipping": "express", "notified": ["email", "sms"]}
    assert run.step("notify_join")["status"] == "completed"
    assert "standard" not in run.statuses()


def test_reference_format_else_branch(tmp_path: Path) -> None:
    run = floxyctl_run(
        tmp_path, "reference_format.yaml", input_file=INPUTS / "reference_small.json"
    )
    assert run.rc == 0, run
    assert run.status == "completed"
    assert run.output == {"order_id": "A-2002", "shipping": "standard", "total": 40}
    assert "notify" not in run.statuses()
    assert "express" not in run.statuses()
