"""docs/python-api.md's programs run as written (the public API they import included)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BLOCKS = re.findall(r"```python\n(.*?)```", (ROOT / "docs" / "python-api.md").read_text(), re.S)


@pytest.mark.parametrize("index", range(3))
def test_the_python_api_page_runs(
    index: int, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)  # the YAML example is named relative to the repository
    exec(compile(BLOCKS[index], f"python-api.md block {index + 1}", "exec"), {"__name__": "doc"})
    out = capsys.readouterr().out
    if index == 1:
        assert "card declined" in out
    if index == 2:
        assert "A-1" in out
