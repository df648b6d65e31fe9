"""Request and response bodies of relationships and the object graph."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, Field

from raptorflow.accounts.schemas import Input
from raptorflow.intel.objects import ObjectKind

RELATIONSHIP_TYPE_PATTERN = r"^[a-z][a-z0-9-]{0,31}$"


class RelationshipCreate(Input):
    """A typed edge between two objects of the org; the kinds are read from the ids."""

    source_id: uuid.UUID
    target_id: uuid.UUID
    relationship_type: str = Field(
        pattern=RELATIONSHIP_TYPE_PATTERN,
        max_length=32,
        description="STIX 2.1 relationship type, e.g. `indicates`, `attributed-to`, `related-to`",
    )
    description: str = Field(default="", max_length=10_000)
    confidence: int | None = Field(default=None, ge=0, le=100)


class RelationshipUpdate(Input):
    """Fields of a relationship that may change (its ends and type are its identity)."""

    description: str = Field(default="", max_length=10_000)
    confidence: int | None = Field(default=None, ge=0, le=100)


class RelationshipOut(BaseModel):
    """A relationship."""

    id: uuid.UUID
    source_id: uuid.UUID
    source_type: ObjectKind
    target_id: uuid.UUID
    target_type: ObjectKind
    relationship_type: str
    description: str
    confidence: int | None
    stix_id: str | None
    created_by: uuid.UUID | None
    created_at: datetime
    updated_at: datetime


class GraphNode(BaseModel):
    """An object in a graph view."""

    id: uuid.UUID
    kind: ObjectKind
    label: str


class GraphEdge(BaseModel):
    """An edge in a graph view; `id` is null for report references (`object-ref`), which are not rows."""

    id: uuid.UUID | None
    source: uuid.UUID
    target: uuid.UUID
    relationship_type: str


class Neighbourhood(BaseModel):
    """An object and what lies within a few hops of it."""

    nodes: list[GraphNode]
    edges: list[GraphEdge]
    truncated: bool = Field(description="true when the node or edge cap cut the graph short")
