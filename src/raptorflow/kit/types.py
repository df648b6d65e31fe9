"""Input types shared by every domain."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import AwareDatetime, BeforeValidator

_NUMERIC = re.compile(r"^\s*[-+]?\d+(\.\d+)?\s*$")


def _rfc3339_only(value: Any) -> Any:
    # Pydantic's lax mode reads 1700000000 (or "1700000000") as a date; clients sending that meant
    # something else, so say what is expected instead of guessing.
    if isinstance(value, int | float) or (isinstance(value, str) and _NUMERIC.match(value)):
        raise ValueError("expected an RFC 3339 date-time string, e.g. 2026-01-01T00:00:00Z")
    return value


# A character that stripping keeps, for the document's (ECMA-262) patterns: what pydantic-core strips
# is Unicode White_Space (Rust's `trim`), which is not ECMA's `\s` (no U+0085, but U+FEFF).
_BLANK = "\t\n\u000b\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
NOT_BLANK = f"[^{_BLANK}]"
# Text never holds NUL (PostgreSQL text cannot): the patterns of request strings say so.
NO_NUL = "^[^\u0000]*$"
NOT_BLANK_NO_NUL = f"^[^\u0000]*[^\u0000{_BLANK}][^\u0000]*$"


def has_nul(value: Any) -> bool:
    """Whether a string, or a string in a list, holds a NUL character (free-form JSON objects are not
    looked into: where they are kept, a NUL is refused as the database refuses it)."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, list | tuple):
        return any(isinstance(item, str) and "\x00" in item for item in value)
    return False


# Timezone required: a naive time is ambiguous (and the database keeps aware UTC only).
RFC3339 = Annotated[AwareDatetime, BeforeValidator(_rfc3339_only)]
