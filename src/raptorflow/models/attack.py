"""MITRE ATT&CK reference data, shared by every organization (not tenant-owned).

Each domain's bundle (enterprise-attack, mobile-attack, ics-attack) is kept as its own copy, keyed by
(STIX id, domain): a group or software published in several domains has one row per domain, so loading
one domain never changes or hides another's rows.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from raptorflow.kit.db import Base, JSONType


class AttackObject(Base):
    """A tactic, technique, sub-technique, group, software or mitigation."""

    __tablename__ = "attack_objects"

    stix_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    domain: Mapped[str] = mapped_column(String(32), primary_key=True, default="enterprise-attack")
    kind: Mapped[str] = mapped_column(String(16))
    external_id: Mapped[str | None] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(300))
    description: Mapped[str] = mapped_column(Text, default="")
    shortname: Mapped[str | None] = mapped_column(String(64))
    tactics: Mapped[list[str]] = mapped_column(JSONType, default=list)
    platforms: Mapped[list[str]] = mapped_column(JSONType, default=list)
    aliases: Mapped[list[str]] = mapped_column(JSONType, default=list)
    parent_external_id: Mapped[str | None] = mapped_column(String(16))
    url: Mapped[str | None] = mapped_column(String(300))
    hidden: Mapped[bool] = mapped_column(default=False)
    modified: Mapped[datetime | None]

    __table_args__ = (
        Index("ix_attack_objects_external_id", "external_id"),
        Index("ix_attack_objects_kind", "kind", "external_id"),
    )


class AttackRelationship(Base):
    """An ATT&CK relationship (uses, mitigates, subtechnique-of)."""

    __tablename__ = "attack_relationships"

    stix_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    domain: Mapped[str] = mapped_column(String(32), primary_key=True, default="enterprise-attack")
    relationship_type: Mapped[str] = mapped_column(String(32))
    source_ref: Mapped[str] = mapped_column(String(100), index=True)
    target_ref: Mapped[str] = mapped_column(String(100), index=True)
    hidden: Mapped[bool] = mapped_column(default=False)


class AttackDomain(Base):
    """A loaded ATT&CK domain and the release its bundle declared (Navigator layers name it)."""

    __tablename__ = "attack_domains"

    domain: Mapped[str] = mapped_column(String(32), primary_key=True)
    attack_version: Mapped[str | None] = mapped_column(String(16))
    synced_at: Mapped[datetime]
