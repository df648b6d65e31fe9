"""Response bodies of the ATT&CK catalog (read-only: the catalog is loaded by `raptorflow attack sync`)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal, get_args

from pydantic import BaseModel, Field

DomainName = Literal["enterprise-attack", "mobile-attack", "ics-attack"]
# The domains ATT&CK publishes, in the order the Navigator lists them.
DOMAINS: tuple[str, ...] = get_args(DomainName)


def domain_rank(domain: str) -> int:
    """A domain's place in Navigator order (Enterprise, Mobile, ICS); unknown names last."""
    return DOMAINS.index(domain) if domain in DOMAINS else len(DOMAINS)


DOMAIN_DESCRIPTION = "ATT&CK domain (matrix): enterprise-attack, mobile-attack or ics-attack."


class AttackRef(BaseModel):
    """A link to another catalog object."""

    id: str = Field(description="ATT&CK id: TA0002, T1059.001, G0007, S0002, M1036.")
    name: str
    domain: str = Field(description=DOMAIN_DESCRIPTION)
    url: str | None


class TacticRef(AttackRef):
    """A link to a tactic, with the shortname techniques refer to it by."""

    shortname: str | None


class TacticOut(TacticRef):
    """A tactic (a column of the matrix)."""

    stix_id: str
    description: str
    modified: datetime | None


class TechniqueSummary(BaseModel):
    """A technique or sub-technique in a list."""

    id: str
    stix_id: str
    name: str
    tactics: list[str] = Field(description="Shortnames of the tactics it serves (e.g. execution).")
    platforms: list[str]
    is_subtechnique: bool
    parent_id: str | None
    domain: str = Field(description=DOMAIN_DESCRIPTION)
    url: str | None
    modified: datetime | None


class TechniqueOut(TechniqueSummary):
    """A technique with its description and everything linked to it."""

    description: str
    parent: AttackRef | None
    subtechniques: list[AttackRef]
    tactic_refs: list[TacticRef]
    groups: list[AttackRef] = Field(description="Groups that use it.")
    software: list[AttackRef] = Field(description="Software that uses it.")
    mitigations: list[AttackRef]


class GroupSummary(BaseModel):
    """A threat group (intrusion set) in a list."""

    id: str
    stix_id: str
    name: str
    aliases: list[str]
    domains: list[str] = Field(description="The ATT&CK domains that publish it.")
    url: str | None
    modified: datetime | None


class GroupOut(GroupSummary):
    """A group with its description, techniques and software."""

    description: str
    domain: str = Field(
        description="The domain whose copy is shown (the first of `domains`, or the asked one)."
    )
    techniques: list[AttackRef]
    software: list[AttackRef]


class SoftwareSummary(BaseModel):
    """A piece of malware or a tool in a list."""

    id: str
    stix_id: str
    name: str
    software_type: Literal["malware", "tool"]
    aliases: list[str]
    platforms: list[str]
    domains: list[str] = Field(description="The ATT&CK domains that publish it.")
    url: str | None
    modified: datetime | None


class SoftwareOut(SoftwareSummary):
    """Software with its description, the techniques it uses and the groups that use it."""

    description: str
    domain: str = Field(
        description="The domain whose copy is shown (the first of `domains`, or the asked one)."
    )
    techniques: list[AttackRef]
    groups: list[AttackRef]
