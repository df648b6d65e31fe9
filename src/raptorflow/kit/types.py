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


# Timezone required: a naive time is ambiguous (and the database keeps aware UTC only).
RFC3339 = Annotated[AwareDatetime, BeforeValidator(_rfc3339_only)]
