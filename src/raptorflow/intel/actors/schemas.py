"""Request and response bodies of the threat-actors API."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import ClassVar

from pydantic import AwareDatetime, Field

from raptorflow.intel.context_base import AliasList, ContextCreate, ContextOut, ContextUpdate, TechniqueList


class Motivation(StrEnum):
    """STIX 2.1 attack-motivation-ov."""

    accidental = "accidental"
    coercion = "coercion"
    dominance = "dominance"
    ideology = "ideology"
    notoriety = "notoriety"
    organizational_gain = "organizational-gain"
    personal_gain = "personal-gain"
    personal_satisfaction = "personal-satisfaction"
    revenge = "revenge"
    unpredictable = "unpredictable"


class Sophistication(StrEnum):
    """STIX 2.1 threat-actor-sophistication-ov."""

    none = "none"
    minimal = "minimal"
    intermediate = "intermediate"
    advanced = "advanced"
    expert = "expert"
    innovator = "innovator"
    strategic = "strategic"


COUNTRY_HELP = "ISO 3166-1 alpha-2 code (two letters, stored upper-case)"


class ThreatActorCreate(ContextCreate):
    """A new threat actor (names are unique in the organization, ignoring case)."""

    name: str = Field(min_length=1, max_length=200)
    aliases: AliasList = Field(default_factory=list)
    motivation: Motivation | None = None
    sophistication: Sophistication | None = None
    country: str | None = Field(default=None, max_length=16, description=COUNTRY_HELP)
    first_seen: AwareDatetime | None = None
    last_seen: AwareDatetime | None = None
    attack_techniques: TechniqueList = Field(default_factory=list)


class ThreatActorUpdate(ContextUpdate):
    """Threat-actor fields to change; null clears the optional ones."""

    not_null: ClassVar[frozenset[str]] = frozenset(
        {"name", "aliases", "description", "tags", "tlp", "attack_techniques"}
    )
    name: str | None = Field(default=None, min_length=1, max_length=200)
    aliases: AliasList | None = None
    motivation: Motivation | None = None
    sophistication: Sophistication | None = None
    country: str | None = Field(default=None, max_length=16, description=COUNTRY_HELP)
    first_seen: AwareDatetime | None = None
    last_seen: AwareDatetime | None = None
    attack_techniques: TechniqueList | None = None


class ThreatActorOut(ContextOut):
    """A threat actor."""

    name: str
    aliases: list[str]
    motivation: str | None
    sophistication: str | None
    country: str | None
    first_seen: datetime | None
    last_seen: datetime | None
    attack_techniques: list[str]
    attack_group_id: str | None
