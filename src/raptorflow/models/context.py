"""Context around indicators: threat actors, campaigns, vulnerabilities, reports, relationships."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Float, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from raptorflow.kit.db import Base, IdMixin, JSONType, TimestampMixin


class _Owned(IdMixin, TimestampMixin):
    """Columns every tenant context object has."""

    org_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    project_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("projects.id", ondelete="SET NULL"))
    workspace_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("workspaces.id", ondelete="SET NULL"))
    description: Mapped[str] = mapped_column(Text, default="")
    tags: Mapped[list[str]] = mapped_column(JSONType, default=list)
    tlp: Mapped[str] = mapped_column(String(16), default="amber")
    archived_at: Mapped[datetime | None]
    stix_id: Mapped[str | None] = mapped_column(String(100))
    created_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))


class ThreatActor(_Owned, Base):
    """An adversary (STIX threat-actor / intrusion-set)."""

    __tablename__ = "threat_actors"

    name: Mapped[str] = mapped_column(String(200))
    aliases: Mapped[list[str]] = mapped_column(JSONType, default=list)
    motivation: Mapped[str | None] = mapped_column(String(64))
    sophistication: Mapped[str | None] = mapped_column(String(64))
    country: Mapped[str | None] = mapped_column(String(2))
    first_seen: Mapped[datetime | None]
    last_seen: Mapped[datetime | None]
    attack_techniques: Mapped[list[str]] = mapped_column(JSONType, default=list)
    attack_group_id: Mapped[str | None] = mapped_column(String(16))

    __table_args__ = (UniqueConstraint("org_id", "name"),)


class Campaign(_Owned, Base):
    """A set of intrusions with a common objective."""

    __tablename__ = "campaigns"

    name: Mapped[str] = mapped_column(String(200))
    aliases: Mapped[list[str]] = mapped_column(JSONType, default=list)
    objective: Mapped[str] = mapped_column(Text, default="")
    first_seen: Mapped[datetime | None]
    last_seen: Mapped[datetime | None]
    attack_techniques: Mapped[list[str]] = mapped_column(JSONType, default=list)

    __table_args__ = (UniqueConstraint("org_id", "name"),)


class Vulnerability(_Owned, Base):
    """A CVE with its CVSS scores, KEV flag and EPSS."""

    __tablename__ = "vulnerabilities"

    cve_id: Mapped[str] = mapped_column(String(32))
    cvss_v3_vector: Mapped[str | None] = mapped_column(String(200))
    cvss_v3_score: Mapped[float | None] = mapped_column(Float)
    cvss_v4_vector: Mapped[str | None] = mapped_column(String(300))
    cvss_v4_score: Mapped[float | None] = mapped_column(Float)
    severity: Mapped[str | None] = mapped_column(String(16))
    kev: Mapped[bool] = mapped_column(default=False)
    epss: Mapped[float | None] = mapped_column(Float)
    published: Mapped[datetime | None]

    __table_args__ = (UniqueConstraint("org_id", "cve_id"),)


class Report(_Owned, Base):
    """A written analysis (markdown) that references other objects."""

    __tablename__ = "reports"

    title: Mapped[str] = mapped_column(String(500))
    body: Mapped[str] = mapped_column(Text, default="")
    published: Mapped[datetime | None]
    attack_techniques: Mapped[list[str]] = mapped_column(JSONType, default=list)
    object_refs: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)


class Relationship(IdMixin, TimestampMixin, Base):
    """A typed edge between two objects of the same organization (STIX relationship)."""

    __tablename__ = "relationships"

    org_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    source_type: Mapped[str] = mapped_column(String(32))
    source_id: Mapped[uuid.UUID]
    target_type: Mapped[str] = mapped_column(String(32))
    target_id: Mapped[uuid.UUID]
    relationship_type: Mapped[str] = mapped_column(String(32))
    description: Mapped[str] = mapped_column(Text, default="")
    confidence: Mapped[int | None]
    stix_id: Mapped[str | None] = mapped_column(String(100))
    created_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))

    __table_args__ = (
        UniqueConstraint("org_id", "source_id", "target_id", "relationship_type"),
        Index("ix_relationships_source", "org_id", "source_id"),
        Index("ix_relationships_target", "org_id", "target_id"),
    )
