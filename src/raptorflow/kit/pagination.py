"""Opaque cursors for keyset pagination."""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Any

import orjson
from fastapi import Query

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
