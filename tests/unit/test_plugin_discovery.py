"""The pre-check that spares a run without plugins from importing importlib.metadata."""

from __future__ import annotations

import sys
import zipfile
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from floxy_core.plugins import _may_declare


def _dist(site: Path, name: str, entry_points_txt: str | None) -> None:
    info = site / name
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1\n")
    if entry_points_txt is not None:
        (info / "entry_points.txt").write_text(entry_points_txt)


def test_every_group_importlib_metadata_sees_is_a_maybe() -> None:
    groups = entry_points().select().groups
    assert groups, "the test environment has console scripts at least"
    assert all(_may_declare(group) for group in groups)


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("plug-1.0.dist-info", "[floxy]\nslack = floxy_slack.plugin\n", True),
        ("PLUG-1.0.DIST-INFO", "[floxy]\nslack = floxy_slack.plugin\n", True),
        ("plug-1.0.egg-info", "[floxy]\nslack = floxy_slack.plugin\n", True),
        ("plug-1.0.dist-info", "[console_scripts]\nplug = plug:main\n", False),
        ("plug-1.0.dist-info", None, False),
        ("plug-1.0.data", "[floxy]\n", False),
    ],
)
def test_a_site_directory_is_read_like_importlib_metadata_reads_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, text: str | None, expected: bool
) -> None:
    _dist(tmp_path, name, text)
    monkeypatch.setattr(sys, "path", [str(tmp_path), str(tmp_path / "missing")])
    assert _may_declare("floxy") is expected
    groups = entry_points().select().groups
    assert ("floxy" in groups) is expected


def test_an_egg_directory_counts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    egg = tmp_path / "plug-1.0-py3.11.egg"
    (egg / "EGG-INFO").mkdir(parents=True)
    (egg / "EGG-INFO" / "entry_points.txt").write_text("[floxy]\nplug = plug\n")
    monkeypatch.setattr(sys, "path", [str(egg)])
    assert _may_declare("floxy")


def test_a_zip_on_sys_path_is_a_maybe(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    archive = tmp_path / "bundle.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("plug.py", "")
    monkeypatch.setattr(sys, "path", [str(archive)])
    assert _may_declare("floxy")


def test_another_distribution_finder_is_a_maybe(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Finder:
        def find_spec(self, *args: object) -> None:
            return None

        def find_distributions(self, *args: object) -> list[object]:
            return []

    monkeypatch.setattr(sys, "path", [str(tmp_path)])
    monkeypatch.setattr(sys, "meta_path", [Finder(), *sys.meta_path])
    assert _may_declare("floxy")
