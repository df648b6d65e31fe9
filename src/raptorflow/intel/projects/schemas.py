"""Bodies of the projects API."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, ClassVar

from pydantic import BaseModel, Field

from raptorflow.accounts.schemas import Input
from raptorflow.intel.common import Tag


class ProjectCreate(Input):
    """A new project."""

    name: str = Field(min_length=1, max_length=200)
    description: str = Field(default="", max_length=10_000)
    tags: list[Tag] = Field(default_factory=list, max_length=50)
    workspace_id: uuid.UUID | None = None


class ProjectUpdate(Input):
    """Project fields to change."""

    not_null: ClassVar[frozenset[str]] = frozenset({"name", "description", "tags"})
    name: str | None = Field(default=None, min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=10_000)
    tags: list[Tag] | None = Field(default=None, max_length=50)
    workspace_id: uuid.UUID | None = None


class ProjectOut(BaseModel):
    """A project."""

    id: uuid.UUID
    name: str
    description: str
    tags: list[str]
    workspace_id: uuid.UUID | None
    archived: bool
    archived_at: datetime | None
    created_by: uuid.UUID | None
    created_at: datetime
    updated_at: datetime


class ProjectStats(BaseModel):
    """What a project holds."""

    indicators: int
    by_type: dict[str, int]
    by_classification: dict[str, int]
    by_score_band: dict[str, int]
    objects: dict[str, int]
    last_activity: datetime | None


class ProjectObject(BaseModel):
    """One object filed under a project."""

    id: uuid.UUID
    kind: str
    label: str
    updated_at: datetime
    extra: dict[str, Any] = Field(default_factory=dict)
