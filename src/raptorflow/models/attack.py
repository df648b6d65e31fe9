"""MITRE ATT&CK reference data, shared by every organization (not tenant-owned)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from raptorflow.kit.db import Base, JSONType


class AttackObject(Base):
    """A tactic, technique, sub-technique, group, software or mitigation."""

    __tablename__ = "attack_objects"

    stix_id: Mapped[str] = mapped_column(String(100), primary_key=True)
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
    domain: Mapped[str] = mapped_column(String(32), default="enterprise-attack")

    __table_args__ = (
        Index("ix_attack_objects_external_id", "external_id"),
        Index("ix_attack_objects_kind", "kind", "external_id"),
    )


class AttackRelationship(Base):
    """An ATT&CK relationship (uses, mitigates, subtechnique-of)."""

    __tablename__ = "attack_relationships"

    stix_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    relationship_type: Mapped[str] = mapped_column(String(32))
    source_ref: Mapped[str] = mapped_column(String(100), index=True)
    target_ref: Mapped[str] = mapped_column(String(100), index=True)
    hidden: Mapped[bool] = mapped_column(default=False)
