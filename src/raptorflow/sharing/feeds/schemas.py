"""Request and response bodies of feeds."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, Field

from raptorflow.accounts.schemas import Input
from raptorflow.intel.common import TLP, Tag
from raptorflow.sharing.imports.schemas import CsvOptions

Kind = Literal["taxii", "misp", "csv", "text"]


class FeedCreate(Input):
    """A remote source to pull: a TAXII 2.1 collection URL, a MISP feed directory, a CSV or text list."""

    name: str = Field(min_length=1, max_length=200)
    kind: Kind
    url: str = Field(
        min_length=8,
        max_length=2000,
        pattern=r"^https?://",
        description="taxii: the collection URL (…/collections/{id}/); misp: the directory with manifest.json",
    )
    username: str | None = Field(default=None, max_length=200, description="HTTP Basic user (TAXII, lists)")
    password: str | None = Field(default=None, max_length=2000, description="write-only")
    schedule_minutes: int | None = Field(
        default=None, ge=5, le=10_080, description="null: pulled on demand only"
    )
    enabled: bool = True
    project_id: uuid.UUID | None = None
    tags: list[Tag] = Field(default_factory=list, max_length=50)
    tlp: TLP = TLP.amber
    confidence: int = Field(default=50, ge=0, le=100)
    type: str | None = Field(default=None, max_length=32, description="csv/text: type of every value")
    csv: CsvOptions | None = None


class FeedUpdate(Input):
    """Fields to change (credentials: give `password` to replace, `null` username and password to clear)."""

    not_null: ClassVar[frozenset[str]] = frozenset({"name", "enabled", "confidence", "url", "tlp"})
    name: str | None = Field(default=None, min_length=1, max_length=200)
    url: str | None = Field(default=None, min_length=8, max_length=2000, pattern=r"^https?://")
    username: str | None = Field(default=None, max_length=200)
    password: str | None = Field(default=None, max_length=2000)
    schedule_minutes: int | None = Field(default=None, ge=5, le=10_080)
    enabled: bool | None = None
    project_id: uuid.UUID | None = None
    tags: list[Tag] | None = Field(default=None, max_length=50)
    tlp: TLP | None = None
    confidence: int | None = Field(default=None, ge=0, le=100)
    type: str | None = Field(default=None, max_length=32)
    csv: CsvOptions | None = None


class FeedOut(BaseModel):
    """A feed with its last run (credentials never shown)."""

    id: uuid.UUID
    name: str
    kind: str
    url: str
    username: str | None
    has_password: bool
    schedule_minutes: int | None
    enabled: bool
    project_id: uuid.UUID | None
    tags: list[str]
    tlp: str
    confidence: int
    type: str | None
    csv: dict[str, Any] | None
    bookmark: dict[str, Any]
    last_run_at: datetime | None
    last_status: str | None
    last_counts: dict[str, Any]
    last_error: str | None
    last_job_id: uuid.UUID | None
    created_by: uuid.UUID | None
    created_at: datetime
    updated_at: datetime
