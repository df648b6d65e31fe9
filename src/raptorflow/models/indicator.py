"""Indicators of compromise, their change history and their sightings."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import CheckConstraint, ForeignKey, Index, Integer, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from raptorflow.kit.db import Base, IdMixin, JSONType, TimestampMixin

TLP_CHECK = "tlp IN ('clear', 'green', 'amber', 'amber+strict', 'red')"


class Indicator(IdMixin, TimestampMixin, Base):
    """One observable (type + normalized value) per organization, never duplicated."""

    __tablename__ = "indicators"

    org_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    type: Mapped[str] = mapped_column(String(32))
    value: Mapped[str] = mapped_column(Text)
    project_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("projects.id", ondelete="SET NULL"))
    workspace_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("workspaces.id", ondelete="SET NULL"))
    classification: Mapped[str] = mapped_column(String(16), default="unknown")
    confidence: Mapped[int] = mapped_column(Integer, default=50)
    score: Mapped[int] = mapped_column(Integer, default=50)
    tlp: Mapped[str] = mapped_column(String(16), default="amber")
    tags: Mapped[list[str]] = mapped_column(JSONType, default=list)
    sources: Mapped[list[str]] = mapped_column(JSONType, default=list)
    description: Mapped[str] = mapped_column(Text, default="")
    attack_techniques: Mapped[list[str]] = mapped_column(JSONType, default=list)
    first_seen: Mapped[datetime]
    last_seen: Mapped[datetime]
    valid_from: Mapped[datetime | None]
    valid_until: Mapped[datetime | None]
    false_positive: Mapped[bool] = mapped_column(default=False)
    false_positive_reason: Mapped[str | None] = mapped_column(Text)
    archived_at: Mapped[datetime | None]
    # When maintenance (`intel.maintain`) recorded that valid_until had passed; reads still decide
    # "expired" from valid_until, this only marks the transition once (events, counts).
    expired_at: Mapped[datetime | None]
    sightings_count: Mapped[int] = mapped_column(Integer, default=0)
    stix_id: Mapped[str | None] = mapped_column(String(100))
    created_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))

    __table_args__ = (
        UniqueConstraint("org_id", "type", "value"),
        Index("ix_indicators_org_created", "org_id", "created_at"),
        Index("ix_indicators_org_last_seen", "org_id", "last_seen"),
        # Only indicators with a project (migration 20261201_1320_intel_write_path): bulk feeds have none.
        Index(
            "ix_indicators_org_project",
            "org_id",
            "project_id",
            postgresql_where=text("project_id IS NOT NULL"),
            sqlite_where=text("project_id IS NOT NULL"),
        ),
        # Console list orders and filters (migration 20261201_1041_console_pages).
        Index("ix_indicators_org_score", "org_id", "score", "id"),
        Index("ix_indicators_org_class_score", "org_id", "classification", "score", "id"),
        Index(
            "ix_indicators_org_archived",
            "org_id",
            "created_at",
            postgresql_where=text("archived_at IS NOT NULL"),
            sqlite_where=text("archived_at IS NOT NULL"),
        ),
        Index(
            "ix_indicators_org_false_positive",
            "org_id",
            "created_at",
            postgresql_where=text("false_positive"),
            sqlite_where=text("false_positive"),
        ),
        Index(
            "ix_indicators_expiry_due",
            "org_id",
            "valid_until",
            postgresql_where=text("expired_at IS NULL AND valid_until IS NOT NULL"),
            sqlite_where=text("expired_at IS NULL AND valid_until IS NOT NULL"),
        ),
        Index(
            "ix_indicators_expired",
            "org_id",
            "valid_until",
            postgresql_where=text("expired_at IS NOT NULL"),
            sqlite_where=text("expired_at IS NOT NULL"),
        ),
        CheckConstraint(TLP_CHECK, name="tlp"),
        CheckConstraint("confidence BETWEEN 0 AND 100", name="confidence"),
        CheckConstraint("score BETWEEN 0 AND 100", name="score"),
        CheckConstraint(
            "classification IN ('malicious', 'suspicious', 'benign', 'unknown')", name="classification"
        ),
    )


class IndicatorHistory(IdMixin, Base):
    """Who changed what on an indicator, and when."""

    __tablename__ = "indicator_history"

    org_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    indicator_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("indicators.id", ondelete="CASCADE"))
    action: Mapped[str] = mapped_column(String(32))
    actor_user_id: Mapped[uuid.UUID | None]
    actor_api_key_id: Mapped[uuid.UUID | None]
    changes: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    created_at: Mapped[datetime]

    __table_args__ = (Index("ix_indicator_history_lookup", "org_id", "indicator_id", "created_at"),)


class Sighting(IdMixin, TimestampMixin, Base):
    """Someone saw an indicator: how often, when, where, according to whom."""

    __tablename__ = "sightings"

    org_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    indicator_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("indicators.id", ondelete="CASCADE"))
    count: Mapped[int] = mapped_column(Integer, default=1)
    first_seen: Mapped[datetime]
    last_seen: Mapped[datetime]
    where: Mapped[str] = mapped_column(String(500), default="")
    source: Mapped[str] = mapped_column(String(200), default="")
    note: Mapped[str] = mapped_column(Text, default="")
    stix_id: Mapped[str | None] = mapped_column(String(100))
    created_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))

    __table_args__ = (Index("ix_sightings_indicator", "org_id", "indicator_id", "last_seen"),)
