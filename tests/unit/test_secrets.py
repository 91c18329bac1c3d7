"""`floxy_core.secrets.redact`: passwords masked where they sit, never by searching their text."""

from __future__ import annotations

import pytest

from floxy_core.secrets import redact


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("postgresql://floxy:floxy@db:5432/floxy", "postgresql://floxy:***@db:5432/floxy"),
        ("https://u:p%40ss:x@h/p?a=1", "https://u:***@h/p?a=1"),
        ("https://u@h/p", "https://u@h/p"),
        ("http://u:@h/", "http://u:***@h/"),
        ("postgresql://h/db?user=u&password=e&sslmode=require", None),
        ("host=h password=e user=u", "host=h password=*** user=u"),
        ("host=h password = 'a b\\' c' user=u", "host=h password = *** user=u"),
        ("password='never closed", "password=***"),
        ("PASSWORD=x", "PASSWORD=***"),
        ("floxyd: floxyd 0.1.0 starting user=floxy", "floxyd: floxyd 0.1.0 starting user=floxy"),
        ("cannot connect to the database", "cannot connect to the database"),
        ("no_password=1 mypassword=2", "no_password=1 mypassword=2"),
        ('{"dsn": "postgresql://a:b@h/d", "e": 1}', '{"dsn": "postgresql://a:***@h/d", "e": 1}'),
        ("two: http://a:1@x http://b:2@y", "two: http://a:***@x http://b:***@y"),
    ],
)
def test_redact_masks_by_structure(text: str, expected: str | None) -> None:
    if expected is None:
        expected = "postgresql://h/db?user=u&password=***&sslmode=require"
    assert redact(text) == expected
