"""One duration grammar (floxy_core.durations) for YAML, floxyctl's flags, floxyd's settings and
the JSON Schema: the same text is accepted or refused everywhere."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from floxy_core.durations import DURATION_PATTERN, parse_duration_ms, parse_seconds
from floxy_core.errors import InputError
from floxyd.config import ConfigError, load_config

SCHEMA = Path(__file__).resolve().parents[2] / "schemas" / "workflow.schema.json"
GOOD = ["0", "250ms", "2s", "1.5s", "1m30s", "1h", "7d", "1d12h", "500us", "500µs", "10ns"]
BAD = ["100", "1.5", "", " ", "2x", "1 m", "-1s", "s", "1h-5m", "ms"]


def _schema_pattern() -> str:
    text = SCHEMA.read_text()
    patterns = [m for m in re.findall(r'"pattern": ("(?:[^"\\]|\\.)*")', text)]
    found = [json.loads(p) for p in patterns if "ms" in json.loads(p)]
    assert len(found) == 1, found
    return str(found[0])


def test_the_schema_pattern_is_the_grammar() -> None:
    assert _schema_pattern() == DURATION_PATTERN
    for text in GOOD:
        assert re.fullmatch(DURATION_PATTERN, text), text
    for text in BAD:
        assert not re.fullmatch(DURATION_PATTERN, text), text


@pytest.mark.parametrize("text", GOOD)
def test_every_front_end_accepts_what_the_grammar_accepts(text: str) -> None:
    seconds = parse_seconds(text)
    assert parse_duration_ms(text) == round(seconds * 1000)
    config = load_config("f.yaml", {}, {"FLOXY_DSN": "dbname=x", "FLOXY_SHUTDOWN_GRACE": text})
    assert config.shutdown_grace == seconds


@pytest.mark.parametrize("text", BAD)
def test_every_front_end_refuses_what_the_grammar_refuses(text: str) -> None:
    with pytest.raises(InputError):
        parse_duration_ms(text)
    if text.strip():  # floxyd takes a blank variable as unset
        with pytest.raises(ConfigError, match="FLOXY_SHUTDOWN_GRACE"):
            load_config("f.yaml", {}, {"FLOXY_DSN": "dbname=x", "FLOXY_SHUTDOWN_GRACE": text})


def test_a_bare_number_needs_a_unit_but_an_integer_is_milliseconds() -> None:
    with pytest.raises(InputError, match=r"'100' needs a unit, e.g. 100ms or 100s"):
        parse_duration_ms("100", what="--worker-interval")
    assert parse_duration_ms(100) == 100
