"""Refanging and trimming of values copied from reports, chats and web pages."""

from __future__ import annotations

import re

# Every character str.isspace() accepts, spelt out because str.strip(chars) has no "whitespace" shorthand.
WHITESPACE = (
    "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007"
    "\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)
# Invisible characters that come along when values are copied out of reports, chats and web pages.
ZERO_WIDTH = "\u200b\u200c\u200d\u2060\ufeff\u180e\u00ad"
ZERO_WIDTH_TABLE = dict.fromkeys(map(ord, ZERO_WIDTH))
TRIM = WHITESPACE + ZERO_WIDTH
QUOTES = "\"'`\u2018\u2019\u201c\u201d"
STRIP = TRIM + QUOTES + "<>"
# Enclosing pairs removed from values that are otherwise kept verbatim (filename, mutex, ...).
PAIRS = {'"': '"', "'": "'", "`": "`", "<": ">", "\u201c": "\u201d", "\u2018": "\u2019"}

_MARKER_RE = re.compile(r"\s*[\[({]\s*(\.|dot|:|://|at|@)\s*[\])}]\s*", re.IGNORECASE)
_MARKERS = {".": ".", "dot": ".", ":": ":", "://": "://", "at": "@", "@": "@"}
_HXXP_RE = re.compile(r"\b(?:hxxp(s?)|(fxp))(?=:)", re.IGNORECASE)


def _marker(m: re.Match[str]) -> str:
    return _MARKERS[m.group(1).lower()]


def _hxxp(m: re.Match[str]) -> str:
    return "ftp" if m.group(2) else "http" + m.group(1).lower()


def _refang_once(s: str) -> str:
    if not s.isascii():
        s = s.translate(ZERO_WIDTH_TABLE)
    s = s.strip(STRIP)
    # Substring tests are far cheaper than a regex scan and almost every value has no defanging at all.
    if "[" in s or "(" in s or "{" in s:
        s = _MARKER_RE.sub(_marker, s)
    if "x" in s or "X" in s:
        s = _HXXP_RE.sub(_hxxp, s)
    return s


def refang(text: str) -> str:
    """Undo defanging (hxxp, [.], (dot), [at], ...); trim whitespace, quotes, <>, zero-width chars."""
    # Repeat until stable so that refang(refang(x)) == refang(x), which keeps normalize idempotent;
    # a value with nothing to undo costs one pass.
    s = text
    while True:
        again = _refang_once(s)
        if again == s:
            return again
        s = again


def trim_opaque(s: str) -> str:
    """Trim a value that is otherwise kept verbatim: outer whitespace, zero-width chars, matching quotes."""
    s = s.strip(TRIM)
    while len(s) >= 2 and PAIRS.get(s[0]) == s[-1]:
        s = s[1:-1].strip(TRIM)
    return s
