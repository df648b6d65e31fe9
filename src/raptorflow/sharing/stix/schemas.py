"""Request and response bodies of the STIX endpoints."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel

# The body of POST /api/v1/stix/bundles, documented for OpenAPI (read with orjson, not pydantic: big
# bundles would cost a model per object).
BUNDLE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["type", "objects"],
    "properties": {
        "type": {"type": "string", "enum": ["bundle"]},
        "id": {"type": "string", "description": "bundle--<UUID>"},
        "objects": {"type": "array", "items": {"type": "object"}},
    },
}


class NativeRef(BaseModel):
    """The RaptorFlow object an imported STIX object became."""

    kind: str
    id: str


class ImportResultOut(BaseModel):
    """The outcome of one object."""

    index: int
    id: str | None
    type: str | None
    status: Literal["created", "updated", "unchanged", "rejected"]
    reason: str | None = None
    native: NativeRef | None = None


class ImportReportOut(BaseModel):
    """Totals and per-object outcomes of a STIX import."""

    total: int
    created: int
    updated: int
    unchanged: int
    rejected: int
    results: list[ImportResultOut]
