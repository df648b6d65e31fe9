"""Request and response bodies of the campaigns API."""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar

from pydantic import AwareDatetime, Field

from raptorflow.intel.context_base import (
    MAX_DESCRIPTION,
    AliasList,
    ContextCreate,
    ContextOut,
    ContextUpdate,
    TechniqueList,
)


class CampaignCreate(ContextCreate):
    """A new campaign (names are unique in the organization, ignoring case)."""

    name: str = Field(min_length=1, max_length=200)
    aliases: AliasList = Field(default_factory=list)
    objective: str = Field(default="", max_length=MAX_DESCRIPTION)
    first_seen: AwareDatetime | None = None
    last_seen: AwareDatetime | None = None
    attack_techniques: TechniqueList = Field(default_factory=list)


class CampaignUpdate(ContextUpdate):
    """Campaign fields to change; null clears the optional ones."""

    not_null: ClassVar[frozenset[str]] = frozenset(
        {"name", "aliases", "objective", "description", "tags", "tlp", "attack_techniques"}
    )
    name: str | None = Field(default=None, min_length=1, max_length=200)
    aliases: AliasList | None = None
    objective: str | None = Field(default=None, max_length=MAX_DESCRIPTION)
    first_seen: AwareDatetime | None = None
    last_seen: AwareDatetime | None = None
    attack_techniques: TechniqueList | None = None


class CampaignOut(ContextOut):
    """A campaign."""

    name: str
    aliases: list[str]
    objective: str
    first_seen: datetime | None
    last_seen: datetime | None
    attack_techniques: list[str]
