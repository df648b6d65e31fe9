"""Feeds: remote sources an organization pulls indicators from on a schedule."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from raptorflow.kit.db import Base, IdMixin, JSONType, TimestampMixin


class Feed(IdMixin, TimestampMixin, Base):
    """One subscription (TAXII collection, MISP feed, CSV or text list), its defaults and last run."""

    __tablename__ = "feeds"

    org_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(16))  # taxii | misp | csv | text
    url: Mapped[str] = mapped_column(Text)
    # Kind-specific settings (collection id, column mapping, comment prefix, ...); never secrets.
    config: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    # Credentials sealed with the server secret when one is configured (see kit.crypto).
    secret: Mapped[str | None] = mapped_column(Text)
    schedule_minutes: Mapped[int | None] = mapped_column(Integer)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    project_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("projects.id", ondelete="SET NULL"))
    default_tags: Mapped[list[str]] = mapped_column(JSONType, default=list)
    tlp: Mapped[str] = mapped_column(String(16), default="amber")
    confidence: Mapped[int] = mapped_column(Integer, default=50)
    # Where the next pull starts: TAXII `added_after`, MISP event timestamps already seen.
    bookmark: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    last_run_at: Mapped[datetime | None]
    last_status: Mapped[str | None] = mapped_column(String(16))
    last_counts: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    last_error: Mapped[str | None] = mapped_column(Text)
    last_job_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"))
    created_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))

    __table_args__ = (UniqueConstraint("org_id", "name"),)
