"""Bodies of the lookup API (the hot path SIEM and SOAR integrations call)."""

from __future__ import annotations

import uuid

from pydantic import BaseModel, Field

from raptorflow.accounts.schemas import Input


class Related(BaseModel):
    """An actor or campaign linked to a matched indicator."""

    id: uuid.UUID
    name: str
    relationship_type: str


class Match(BaseModel):
    """An indicator that matches the looked-up value."""

    id: uuid.UUID
    type: str
    value: str
    effective_score: int
    classification: str
    tlp: str
    tags: list[str]
    expired: bool
    false_positive: bool
    last_seen: str
    related: dict[str, list[Related]]


class LookupResult(BaseModel):
    """The answer for one value."""

    value: str
    type: str | None
    normalized: str | None
    found: bool
    matches: list[Match]
    error: str | None = None


class BatchIn(Input):
    """Up to 10,000 values, answered in the order given."""

    values: list[str] = Field(min_length=1, max_length=10_000)
    include_expired: bool = False


class BatchOut(BaseModel):
    """One result per value, same order."""

    results: list[LookupResult]
