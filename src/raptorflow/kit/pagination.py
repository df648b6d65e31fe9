"""Opaque cursors for keyset pagination."""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Any

import orjson
from fastapi import Query
from sqlalchemy import and_, or_

from raptorflow.kit.errors import InvalidInput

MAX_LIMIT = 1000

LimitParam = Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Page size (1-1000).")]
CursorParam = Annotated[str | None, Query(max_length=512, description="`next_cursor` of the previous page.")]


def encode_cursor(values: dict[str, Any]) -> str:
    """An opaque, URL-safe cursor."""
    return base64.urlsafe_b64encode(orjson.dumps(values)).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> dict[str, Any] | None:
    """The values inside a cursor; a 422 naming `cursor` when it was not made by us."""
    if not cursor:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        values = orjson.loads(raw)
    except (binascii.Error, ValueError, orjson.JSONDecodeError):
        raise InvalidInput("cursor", "not a cursor returned by this API") from None
    if not isinstance(values, dict):
        raise InvalidInput("cursor", "not a cursor returned by this API")
    return values


def parse_sort(sort: str | None, allowed: dict[str, Any], default: str) -> list[tuple[str, bool]]:
    """`sort=field,-other` → [(field, descending)], each checked against `allowed` (422 naming `sort`)."""
    spec = sort or default
    out: list[tuple[str, bool]] = []
    for part in spec.split(","):
        part = part.strip()
        if not part:
            continue
        descending = part.startswith("-")
        name = part.lstrip("-+")
        if name not in allowed:
            raise InvalidInput("sort", f"cannot sort by {name!r}; accepted: {', '.join(sorted(allowed))}")
        if any(name == seen for seen, _ in out):
            raise InvalidInput("sort", f"{name!r} is given twice")
        out.append((name, descending))
    if not out:
        raise InvalidInput("sort", "give at least one field")
    if len(out) > 3:
        raise InvalidInput("sort", "at most 3 fields")
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
