"""Imports of indicator files (STIX, MISP, CSV, text) and the uploaded bytes they read."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from raptorflow.kit.db import Base, IdMixin, JSONType, TimestampMixin


class ImportRun(IdMixin, TimestampMixin, Base):
    """One import: its format and options, the job running it, its counts and first rejections."""

    __tablename__ = "imports"

    org_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    job_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"))
    feed_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("feeds.id", ondelete="SET NULL"))
    format: Mapped[str] = mapped_column(String(16))
    filename: Mapped[str] = mapped_column(String(300), default="")
    size_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    # Project, default tags/TLP/confidence, CSV column mapping.
    options: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    # queued → running → succeeded | failed | cancelled
    status: Mapped[str] = mapped_column(String(16), default="queued")
    total: Mapped[int | None] = mapped_column(BigInteger)
    processed: Mapped[int] = mapped_column(BigInteger, default=0)
    created: Mapped[int] = mapped_column(BigInteger, default=0)
    merged: Mapped[int] = mapped_column(BigInteger, default=0)
    rejected: Mapped[int] = mapped_column(BigInteger, default=0)
    rejections: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    error: Mapped[str | None] = mapped_column(Text)
    finished_at: Mapped[datetime | None]
    created_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))

    __table_args__ = (Index("ix_imports_org_id", "org_id", "id"),)


class ImportChunk(Base):
    """A piece of an uploaded file, kept in the database until its import ends (no local files as state)."""

    __tablename__ = "import_chunks"

    import_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("imports.id", ondelete="CASCADE"), primary_key=True
    )
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    org_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    data: Mapped[bytes] = mapped_column(LargeBinary)
