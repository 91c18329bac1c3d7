"""Masking credentials by structure: the one redaction every floxy program uses.

A password is found by where it sits, never by searching for its text: replacing every
occurrence of the password turned `floxyd` into `***d` when the password was `floxy`, and `e`
made `cannot conn***ct` of every message. Three places can hold one:

* the userinfo of a URL, `scheme://user:PASSWORD@host` (libpq URLs, HTTP handler URLs);
* a `password` query parameter of such a URL (`postgresql://h/db?password=PASSWORD`);
* the `password` keyword of a libpq keyword/value string (`password=PASSWORD`,
  `password = 'it''s \\' quoted'`), quoted or not.

`redact` masks every such structure, in a single URL or connection string as in free text (log
lines, error messages). The user name is kept: it helps the reader and is not a secret. Pure
string work, no I/O: the CLI, the daemon and the handlers share it.
"""

from __future__ import annotations

import re

__all__ = ["MASK", "redact"]

MASK = "***"

_URL = re.compile(
    r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)"
    r"(?P<user>[^\s:/?#@]*)(?::(?P<password>[^\s/?#@]*))?@"
)
"""The start of a URL with userinfo. Userinfo cannot hold `/ ? # @` unescaped (RFC 3986)."""

_QUERY_PASSWORD = re.compile(r"(?i)([?&]password=)[^&#\s]*")

_KEYWORD_PASSWORD = re.compile(
    r"(?i)(?<![A-Za-z0-9_?&])(password\s*=\s*)('(?:[^'\\]|\\.)*'?|[^\s']+)"
)
"""libpq's keyword/value syntax: a value is single-quoted (backslash escapes) or runs to white
space. An unterminated quote masks to the end, as libpq would read it."""


def _mask_userinfo(match: re.Match[str]) -> str:
    if match.group("password") is None:
        return match.group(0)
    return f"{match.group('scheme')}{match.group('user')}:{MASK}@"


def redact(text: str) -> str:
    """`text` with every password that sits in a URL or a `password=` keyword masked."""
    if "@" in text:
        text = _URL.sub(_mask_userinfo, text)
    lowered = text.lower()
    if "password" in lowered:
        text = _QUERY_PASSWORD.sub(rf"\1{MASK}", text)
        text = _KEYWORD_PASSWORD.sub(rf"\1{MASK}", text)
    return text
