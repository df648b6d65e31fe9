"""STIX objects imported as they came (producer's ids kept) and TAXII 2.1 collections and statuses."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from raptorflow.kit.db import Base, IdMixin, JSONType, TimestampMixin


class StixObject(IdMixin, TimestampMixin, Base):
    """One imported STIX object (latest version), and the native row it became, if any."""

    __tablename__ = "stix_objects"

    org_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    stix_id: Mapped[str] = mapped_column(String(160))
    type: Mapped[str] = mapped_column(String(64))
    modified: Mapped[datetime | None]
    object: Mapped[dict[str, Any]] = mapped_column(JSONType)
    native_kind: Mapped[str | None] = mapped_column(String(32))
    native_id: Mapped[uuid.UUID | None]
    collection_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("taxii_collections.id", ondelete="SET NULL")
    )

    __table_args__ = (
        UniqueConstraint("org_id", "stix_id"),
        Index("ix_stix_objects_collection", "org_id", "collection_id", "updated_at"),
    )


class TaxiiCollection(IdMixin, TimestampMixin, Base):
    """A TAXII 2.1 collection of an organization: a filter over its intelligence, readable/writable."""

    __tablename__ = "taxii_collections"

    org_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    filter: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    can_read: Mapped[bool] = mapped_column(default=True)
    can_write: Mapped[bool] = mapped_column(default=False)
    created_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))

    __table_args__ = (UniqueConstraint("org_id", "title"),)


class TaxiiStatus(IdMixin, Base):
    """The outcome of one TAXII `POST …/objects/` (a TAXII status resource)."""

    __tablename__ = "taxii_statuses"

    org_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    collection_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("taxii_collections.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(16))
    request_timestamp: Mapped[datetime]
    total_count: Mapped[int] = mapped_column(Integer)
    success_count: Mapped[int] = mapped_column(Integer)
    failure_count: Mapped[int] = mapped_column(Integer)
    pending_count: Mapped[int] = mapped_column(Integer)
    successes: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    failures: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
