"""Opaque cursors for keyset pagination."""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable
from typing import Annotated, Any

import orjson
from fastapi import Query
from sqlalchemy import and_, or_

from raptorflow.kit.errors import InvalidInput

MAX_LIMIT = 1000
MAX_SORT_FIELDS = 3
# A cursor is unpadded URL-safe base64 (`encode_cursor`); the document says so, and what a client may
# send is one this API returned as `next_cursor` (anything else: 422 naming `cursor`); empty: the start.
CURSOR_PATTERN = r"^[A-Za-z0-9_-]{0,512}$"
_CURSOR = re.compile(CURSOR_PATTERN.removeprefix("^").removesuffix("$"))

LimitParam = Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Page size (1-1000).")]
CursorParam = Annotated[
    str | None,
    Query(
        max_length=512,
        description="`next_cursor` of the previous page (opaque; URL-safe base64). Another value is a 422.",
        json_schema_extra={"pattern": CURSOR_PATTERN},
    ),
]


def encode_cursor(values: dict[str, Any]) -> str:
    """An opaque, URL-safe cursor."""
    return base64.urlsafe_b64encode(orjson.dumps(values)).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> dict[str, Any] | None:
    """The values inside a cursor; a 422 naming `cursor` when it was not made by us."""
    if not cursor:
        return None
    if not _CURSOR.fullmatch(cursor):
        raise InvalidInput("cursor", "not a cursor returned by this API")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        values = orjson.loads(raw)
    except (binascii.Error, ValueError, orjson.JSONDecodeError):
        raise InvalidInput("cursor", "not a cursor returned by this API") from None
    if not isinstance(values, dict):
        raise InvalidInput("cursor", "not a cursor returned by this API")
    return values


def sort_pattern(fields: Iterable[str]) -> str:
    """The grammar of `sort`: 1-3 of `fields`, comma-separated, each `-`-prefixed for descending."""
    one = "-?(?:" + "|".join(re.escape(name) for name in sorted(fields)) + ")"
    return f"^{one}(?:,{one}){{0,{MAX_SORT_FIELDS - 1}}}$"


def sort_query(fields: Iterable[str], example: str) -> Any:
    """The `sort` query parameter of a list over `fields`, its grammar documented (`sort_pattern`)."""
    names = sorted(fields)
    return Query(
        max_length=200,
        description=f"Up to {MAX_SORT_FIELDS} of {', '.join(names)}, comma-separated; `-` for descending "
        f"(e.g. `{example}`). A field named again is ignored.",
        json_schema_extra={"pattern": sort_pattern(names)},
    )


def parse_sort(sort: str | None, allowed: dict[str, Any], default: str) -> list[tuple[str, bool]]:
    """`sort=field,-other` → [(field, descending)], checked against `allowed` (422 naming `sort`).

    Exactly the grammar of `sort_pattern`: no blanks, no `+`; a field named again is ignored (the
    first mention already ordered by it).
    """
    spec = default if sort is None else sort
    parts = spec.split(",")
    if len(parts) > MAX_SORT_FIELDS:
        raise InvalidInput("sort", f"at most {MAX_SORT_FIELDS} fields")
    out: list[tuple[str, bool]] = []
    for part in parts:
        descending = part.startswith("-")
        name = part.removeprefix("-")
        if name not in allowed:
            raise InvalidInput(
                "sort", f"cannot sort by {part!r}; accepted: {', '.join(sorted(allowed))}, `-` for descending"
            )
        if all(name != seen for seen, _ in out):
            out.append((name, descending))
    return out


def keyset_after(columns: list[tuple[Any, bool]], values: list[Any]) -> Any:
    """The WHERE clause that continues an ordering after the row whose sort key is `values`.

    `columns` are (column, descending) pairs, the last one a unique tie-breaker; directions may mix.
    """
    clauses = []
    for i, (column, descending) in enumerate(columns):
        equal_prefix = [columns[j][0] == values[j] for j in range(i)]
        step = column < values[i] if descending else column > values[i]
        clauses.append(and_(*equal_prefix, step))
    return or_(*clauses)
