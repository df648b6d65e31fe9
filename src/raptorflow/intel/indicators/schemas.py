"""Request and response bodies of the indicators API."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal

from fastapi import Query
from pydantic import AwareDatetime, BaseModel, Field

from raptorflow.accounts.schemas import Input
from raptorflow.intel.common import TLP, Classification, Tag, TechniqueId
from raptorflow.kit.errors import InvalidInput
from raptorflow.kit.types import NO_NUL, RFC3339, has_nul


class IndicatorCreate(Input):
    """One indicator to create (or merge into an existing one with the same type and value)."""

    value: str = Field(min_length=1, max_length=2048)
    type: str | None = Field(
        default=None, max_length=32, description="detected when omitted; `ip` = v4 or v6"
    )
    project_id: uuid.UUID | None = None
    workspace_id: uuid.UUID | None = None
    classification: Classification | None = None
    confidence: int | None = Field(default=None, ge=0, le=100)
    score: int | None = Field(default=None, ge=0, le=100)
    tlp: TLP | None = None
    tags: list[Tag] = Field(default_factory=list, max_length=50)
    description: str | None = Field(default=None, max_length=10_000)
    source: str | None = Field(default=None, min_length=1, max_length=200)
    first_seen: AwareDatetime | None = None
    last_seen: AwareDatetime | None = None
    valid_from: AwareDatetime | None = None
    valid_until: AwareDatetime | None = None
    attack_techniques: list[TechniqueId] = Field(default_factory=list, max_length=100)


class IndicatorUpdate(Input):
    """Fields an analyst may change (type and value are the identity: never changed)."""

    not_null: ClassVar[frozenset[str]] = frozenset(
        {"classification", "tlp", "confidence", "score", "description"}
    )
    project_id: uuid.UUID | None = None
    workspace_id: uuid.UUID | None = None
    classification: Classification | None = None
    confidence: int | None = Field(default=None, ge=0, le=100)
    score: int | None = Field(default=None, ge=0, le=100)
    tlp: TLP | None = None
    tags: list[Tag] | None = Field(default=None, max_length=50)
    description: str | None = Field(default=None, max_length=10_000)
    valid_from: AwareDatetime | None = None
    valid_until: AwareDatetime | None = None
    attack_techniques: list[TechniqueId] | None = Field(default=None, max_length=100)


class ScoreParts(BaseModel):
    """How the effective score is made."""

    base: int
    decay: float
    sightings: float
    false_positive: bool
    half_life_days: float | None
    age_days: float
    effective: int


class IndicatorOut(BaseModel):
    """An indicator as the API shows it."""

    id: uuid.UUID
    type: str
    value: str
    project_id: uuid.UUID | None
    workspace_id: uuid.UUID | None
    classification: Classification
    confidence: int
    score: int
    effective_score: int
    score_breakdown: ScoreParts
    tlp: TLP
    tags: list[str]
    sources: list[str]
    description: str
    attack_techniques: list[str]
    first_seen: datetime
    last_seen: datetime
    valid_from: datetime | None
    valid_until: datetime | None
    expired: bool
    false_positive: bool
    false_positive_reason: str | None
    archived: bool
    archived_at: datetime | None
    sightings_count: int
    stix_id: str | None
    created_by: uuid.UUID | None
    created_at: datetime
    updated_at: datetime


class BulkIn(Input):
    """Up to 1,000 indicators; each item is validated on its own so one bad item rejects only itself."""

    items: list[dict[str, Any]] = Field(min_length=1, max_length=1000)


class BulkItemResult(BaseModel):
    """The outcome of one bulk item."""

    index: int
    status: Literal["created", "merged", "rejected"]
    id: uuid.UUID | None = None
    errors: list[dict[str, str]] | None = None


class BulkOut(BaseModel):
    """Per-item outcomes and totals."""

    results: list[BulkItemResult]
    created: int
    merged: int
    rejected: int


class FalsePositiveIn(Input):
    """Why this indicator is a false positive."""

    reason: str = Field(min_length=1, max_length=2000)


class BulkUpdateSet(Input):
    """What a filtered bulk update sets."""

    tags: list[Tag] | None = Field(default=None, max_length=50)
    add_tags: list[Tag] | None = Field(default=None, max_length=50)
    remove_tags: list[Tag] | None = Field(default=None, max_length=50)
    classification: Classification | None = None
    archived: bool | None = None


class BulkUpdateFilter(Input):
    """Which indicators a bulk update touches (all given conditions must hold; at least one)."""

    ids: list[uuid.UUID] | None = Field(default=None, max_length=10_000)
    type: str | None = None
    classification: Classification | None = None
    tag: str | None = None
    project_id: uuid.UUID | None = None
    source: str | None = None
    tlp: TLP | None = None
    min_score: int | None = Field(default=None, ge=0, le=100)
    max_score: int | None = Field(default=None, ge=0, le=100)
    archived: bool | None = None


class BulkUpdateIn(Input):
    """A filtered bulk update."""

    filter: BulkUpdateFilter
    set: BulkUpdateSet


class BulkUpdateOut(BaseModel):
    """How many indicators a bulk update changed."""

    matched: int


class HistoryEntry(BaseModel):
    """One change of an indicator."""

    action: str
    actor_user_id: uuid.UUID | None
    actor_api_key_id: uuid.UUID | None
    changes: dict[str, Any]
    at: datetime


class Stats(BaseModel):
    """Counts over the org's live (not archived) indicators."""

    total: int
    by_type: dict[str, int]
    by_classification: dict[str, int]
    by_tlp: dict[str, int]
    by_score_band: dict[str, int]
    added_per_day: list[dict[str, Any]]


class ScoringSettings(BaseModel):
    """Score half-lives per indicator type, in days (null = never decays)."""

    half_life_days: dict[str, float | None]


class ScoringSettingsIn(Input):
    """Overrides of the default half-lives; types left out keep the default."""

    half_life_days: dict[str, float | None] = Field(max_length=32)


_TEXT: dict[str, Any] = {"pattern": NO_NUL}


def indicator_filters(
    type: Annotated[str | None, Query(max_length=32, json_schema_extra=_TEXT)] = None,
    classification: Classification | None = None,
    tag: Annotated[str | None, Query(max_length=64, json_schema_extra=_TEXT)] = None,
    project_id: uuid.UUID | None = None,
    workspace: uuid.UUID | None = None,
    tlp: TLP | None = None,
    min_score: Annotated[int | None, Query(ge=0, le=100)] = None,
    max_score: Annotated[int | None, Query(ge=0, le=100)] = None,
    first_seen_after: RFC3339 | None = None,
    first_seen_before: RFC3339 | None = None,
    last_seen_after: RFC3339 | None = None,
    last_seen_before: RFC3339 | None = None,
    false_positive: bool | None = None,
    archived: bool = False,
    expired: bool | None = None,
    source: Annotated[str | None, Query(max_length=200, json_schema_extra=_TEXT)] = None,
) -> dict[str, Any]:
    """The filters of GET /api/v1/indicators (and of exports), as the dict the repository takes."""
    for name, text in (("type", type), ("tag", tag), ("source", source)):
        if has_nul(text):
            # Checked here, not by the database: an export streams, and fails there after its headers.
            raise InvalidInput(name, "must not contain a NUL character (U+0000)")
    filters: dict[str, Any] = {
        "type": type.strip().lower() if type else None,
        "classification": classification.value if classification else None,
        "tag": tag.strip().lower() if tag else None,
        "project_id": project_id,
        "workspace_id": workspace,
        "tlp": tlp.value if tlp else None,
        "min_score": min_score,
        "max_score": max_score,
        "first_seen_after": first_seen_after,
        "first_seen_before": first_seen_before,
        "last_seen_after": last_seen_after,
        "last_seen_before": last_seen_before,
        "false_positive": false_positive,
        "archived": archived,
        "expired": expired,
        "source": source,
    }
    return filters
