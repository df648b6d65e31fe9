"""The append-only, hash-chained audit log."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from raptorflow.kit.db import Base, IdMixin


class AuditEntry(IdMixin, Base):
    """Who did what to what, when and from where; `hash` chains each org's entries."""

    __tablename__ = "audit_log"

    # No foreign keys: entries outlive the org, the user and the target they name.
    # Account-level events (sign-in, account deletion) use the nil UUID as their chain.
    org_id: Mapped[uuid.UUID]
    seq: Mapped[int] = mapped_column(BigInteger)
    actor_user_id: Mapped[uuid.UUID | None]
    actor_api_key_id: Mapped[uuid.UUID | None]
    action: Mapped[str] = mapped_column(String(64))
    target_type: Mapped[str | None] = mapped_column(String(64))
    target_id: Mapped[str | None] = mapped_column(String(128))
    ip: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(500))
    request_id: Mapped[str | None] = mapped_column(String(128))
    # Digest of ip + user agent: the chain covers it, so those two can be erased for GDPR.
    pii_digest: Mapped[str] = mapped_column(String(64))
    details: Mapped[dict[str, Any]]
    created_at: Mapped[datetime]
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))

    __table_args__ = (
        Index("uq_audit_log_chain", "org_id", "seq", unique=True),
        Index("ix_audit_log_org_created", "org_id", "created_at"),
    )
