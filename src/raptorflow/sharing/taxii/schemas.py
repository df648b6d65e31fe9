"""Bodies of the TAXII collection API (`/api/v1/taxii-collections`)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, ClassVar

from pydantic import BaseModel, Field

from raptorflow.accounts.schemas import Input
from raptorflow.intel.common import TLP, Tag


class CollectionFilter(Input):
    """Which of the org's indicators a collection serves (all conditions must hold)."""

    project_id: uuid.UUID | None = None
    tags: list[Tag] | None = Field(default=None, max_length=50, description="any of these tags")
    types: list[str] | None = Field(default=None, max_length=32, description="indicator types, e.g. `ipv4`")
    min_score: int | None = Field(default=None, ge=0, le=100)
    tlp_max: TLP | None = Field(default=None, description="the most restrictive TLP served")


class CollectionCreate(Input):
    """A new TAXII collection."""

    title: str = Field(min_length=1, max_length=200)
    description: str = Field(default="", max_length=10_000)
    filter: CollectionFilter = Field(default_factory=CollectionFilter)
    can_read: bool = True
    can_write: bool = False


class CollectionUpdate(Input):
    """Collection fields to change (filter replaces the whole filter)."""

    not_null: ClassVar[frozenset[str]] = frozenset(
        {"title", "description", "can_read", "can_write", "filter"}
    )
    title: str | None = Field(default=None, min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=10_000)
    filter: CollectionFilter | None = None
    can_read: bool | None = None
    can_write: bool | None = None


class CollectionOut(BaseModel):
    """A TAXII collection and where TAXII clients find it."""

    id: uuid.UUID
    title: str
    description: str
    filter: CollectionFilter
    can_read: bool
    can_write: bool
    url: str = Field(description="the collection's TAXII 2.1 URL")
    created_by: uuid.UUID | None
    created_at: datetime
    updated_at: datetime


# The TAXII 2.1 error message (section 3.6.1): what every /taxii2 error answers, in the OpenAPI document.
ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "A TAXII 2.1 error message.",
    "required": ["title"],
    "properties": {
        "title": {"type": "string"},
        "description": {"type": "string"},
        "error_id": {"type": "string"},
        "error_code": {"type": "string"},
        "http_status": {"type": "string"},
        "external_details": {"type": "string"},
        "details": {"type": "object"},
    },
}
