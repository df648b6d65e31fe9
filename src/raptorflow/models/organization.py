"""Organizations (tenants), memberships, invitations and workspaces."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import CheckConstraint, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from raptorflow.kit.db import Base, IdMixin, JSONType, TimestampMixin

ROLE_CHECK = "role IN ('viewer', 'editor', 'admin', 'owner')"


class Organization(IdMixin, TimestampMixin, Base):
    """A tenant: every tenant-owned row carries its id."""

    __tablename__ = "organizations"

    name: Mapped[str] = mapped_column(String(200))
    slug: Mapped[str] = mapped_column(String(63), unique=True)
    # Org-level preferences, e.g. {"half_life_days": {"ipv4": 14}} for score decay.
    settings: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    # Set when deletion is accepted: members, keys and invitations are gone at once; the
    # `accounts.purge_org` job then deletes the data in batches and finally this row.
    deleted_at: Mapped[datetime | None]


class Membership(IdMixin, TimestampMixin, Base):
    """A user's role in an organization."""

    __tablename__ = "memberships"

    org_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    role: Mapped[str] = mapped_column(String(16))

    __table_args__ = (
        UniqueConstraint("org_id", "user_id"),
        CheckConstraint(ROLE_CHECK, name="role"),
    )


class Invitation(IdMixin, TimestampMixin, Base):
    """A pending membership for an email that has no account yet."""

    __tablename__ = "invitations"

    org_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"), index=True)
    email: Mapped[str] = mapped_column(String(320), index=True)
    role: Mapped[str] = mapped_column(String(16))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    invited_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    expires_at: Mapped[datetime]
    accepted_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]

    __table_args__ = (CheckConstraint(ROLE_CHECK, name="role"),)


class Workspace(IdMixin, TimestampMixin, Base):
    """A group inside an organization that objects can be filed under."""

    __tablename__ = "workspaces"

    org_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(String(2000), default="")

    __table_args__ = (UniqueConstraint("org_id", "name"),)
