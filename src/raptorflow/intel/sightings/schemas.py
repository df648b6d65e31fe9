"""Request and response bodies of sightings."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import AwareDatetime, BaseModel, Field

from raptorflow.accounts.schemas import Input

MAX_COUNT = 1_000_000


class SightingCreate(Input):
    """Someone saw an indicator `count` times between `first_seen` and `last_seen` (default: now)."""

    count: int = Field(default=1, ge=1, le=MAX_COUNT)
    first_seen: AwareDatetime | None = Field(default=None, description="defaults to last_seen")
    last_seen: AwareDatetime | None = Field(default=None, description="defaults to now")
    where: str = Field(default="", max_length=500, description="host, network or sensor")
    source: str = Field(default="", max_length=200, description="who reported it")
    note: str = Field(default="", max_length=10_000)


class SightingOut(BaseModel):
    """A sighting."""

    id: uuid.UUID
    indicator_id: uuid.UUID
    count: int
    first_seen: datetime
    last_seen: datetime
    where: str
    source: str
    note: str
    stix_id: str | None
    created_by: uuid.UUID | None
    created_at: datetime
