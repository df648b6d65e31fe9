"""Request and response bodies of the reports API."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Annotated, ClassVar

from pydantic import AwareDatetime, BaseModel, Field, StringConstraints

from raptorflow.accounts.schemas import Input
from raptorflow.intel.context_base import ContextCreate, ContextOut, ContextUpdate, TechniqueList

MAX_BODY = 1_000_000
MAX_REFS = 1_000
# Markdown is kept byte for byte: trailing spaces are line breaks there, so no stripping.
Markdown = Annotated[str, StringConstraints(strip_whitespace=False, max_length=MAX_BODY)]


class RefType(StrEnum):
    """Kinds of object a report may reference (STIX type names)."""

    indicator = "indicator"
    threat_actor = "threat-actor"
    campaign = "campaign"
    vulnerability = "vulnerability"
    report = "report"


class ObjectRef(Input):
    """A reference to an object of the same organization."""

    type: RefType
    id: uuid.UUID


class ObjectRefOut(BaseModel):
    """A referenced object with its name (indicator: value; vulnerability: CVE id; report: title)."""

    type: str = Field(description="indicator, threat-actor, campaign, vulnerability or report")
    id: uuid.UUID
    name: str | None = Field(description="null when the object has been deleted since")


class ReportCreate(ContextCreate):
    """A new report; the markdown body is stored as sent."""

    title: str = Field(min_length=1, max_length=500)
    body: Markdown = Field(default="", description="Markdown, stored as-is")
    published: AwareDatetime | None = None
    attack_techniques: TechniqueList = Field(default_factory=list)
    object_refs: list[ObjectRef] = Field(default_factory=list, max_length=MAX_REFS)


class ReportUpdate(ContextUpdate):
    """Report fields to change (object_refs replaces the whole list)."""

    not_null: ClassVar[frozenset[str]] = frozenset(
        {"title", "body", "description", "tags", "tlp", "attack_techniques", "object_refs"}
    )
    title: str | None = Field(default=None, min_length=1, max_length=500)
    body: Markdown | None = Field(default=None, description="Markdown, stored as-is")
    published: AwareDatetime | None = None
    attack_techniques: TechniqueList | None = None
    object_refs: list[ObjectRef] | None = Field(default=None, max_length=MAX_REFS)


class ReportOut(ContextOut):
    """A report with its references resolved to names."""

    title: str
    body: str
    published: datetime | None
    attack_techniques: list[str]
    object_refs: list[ObjectRefOut]
