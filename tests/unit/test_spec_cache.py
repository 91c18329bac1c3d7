"""The validated-document cache: hits give the same workflow, any change misses."""

from __future__ import annotations

from pathlib import Path

import pytest

from floxy_core.errors import ValidationError
from floxy_core.spec import load_workflow_file

FLOW = """
handlers:
  - {name: a, exec: "echo '{}'"}
flows:
  - name: cached
    steps: [a]
"""


@pytest.fixture
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "cache"
    monkeypatch.setenv("FLOXY_CACHE_DIR", str(directory))
    monkeypatch.delenv("FLOXY_NO_CACHE", raising=False)
    return directory


def test_second_load_is_a_hit_with_the_same_result(tmp_path: Path, cache_dir: Path) -> None:
    path = tmp_path / "wf.yaml"
    path.write_text(FLOW)
    first = load_workflow_file(path)
    entries = list(cache_dir.glob("*.json"))
    assert len(entries) == 1
    second = load_workflow_file(path)
    assert second.flows[0].content_hash == first.flows[0].content_hash
    assert second.handlers["a"].base_dir == first.handlers["a"].base_dir
    assert len(list(cache_dir.glob("*.json"))) == 1


def test_an_edited_file_is_validated_again(tmp_path: Path, cache_dir: Path) -> None:
    path = tmp_path / "wf.yaml"
    path.write_text(FLOW)
    load_workflow_file(path)
    path.write_text(FLOW.replace("steps: [a]", "steps: [a, nope]"))
    with pytest.raises(ValidationError) as info:
        load_workflow_file(path)
    assert "nope" in str(info.value)


def test_a_corrupt_entry_is_ignored(tmp_path: Path, cache_dir: Path) -> None:
    path = tmp_path / "wf.yaml"
    path.write_text(FLOW)
    load_workflow_file(path)
    (entry,) = cache_dir.glob("*.json")
    entry.write_text("{not json")
    assert load_workflow_file(path).flows[0].id == "cached-v1"


def test_no_cache_writes_nothing(
    tmp_path: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLOXY_NO_CACHE", "1")
    path = tmp_path / "wf.yaml"
    path.write_text(FLOW)
    load_workflow_file(path)
    assert not cache_dir.exists()


def test_an_edited_file_replaces_its_entry(tmp_path: Path, cache_dir: Path) -> None:
    path = tmp_path / "wf.yaml"
    path.write_text(FLOW)
    load_workflow_file(path)
    path.write_text(FLOW.replace("name: cached", "name: renamed"))
    assert load_workflow_file(path).flows[0].id == "renamed-v1"
    assert load_workflow_file(path).flows[0].id == "renamed-v1"
    assert len(list(cache_dir.glob("*.json"))) == 1


def test_an_entry_of_another_file_is_not_used(tmp_path: Path, cache_dir: Path) -> None:
    first, second = tmp_path / "one.yaml", tmp_path / "two.yaml"
    first.write_text(FLOW)
    second.write_text(FLOW.replace("name: cached", "name: second"))
    load_workflow_file(first)
    (entry,) = cache_dir.glob("*.json")
    load_workflow_file(second)
    (other,) = set(cache_dir.glob("*.json")) - {entry}
    other.write_bytes(entry.read_bytes())  # as if the two paths shared an entry name
    assert load_workflow_file(second).flows[0].id == "second-v1"


def test_a_hit_keeps_where_each_handler_is_declared(tmp_path: Path, cache_dir: Path) -> None:
    path = tmp_path / "wf.yaml"
    path.write_text(FLOW.replace("handlers:\n", "handlers:\n  - {name: z, exec: x}\n"))
    first = load_workflow_file(path)
    assert (first.handlers["z"].where, first.handlers["a"].where) == ((3, 5), (4, 5))
    second = load_workflow_file(path)
    assert len(list(cache_dir.glob("*.json"))) == 1
    assert [h.where for h in second.handlers.values()] == [(3, 5), (4, 5)]
