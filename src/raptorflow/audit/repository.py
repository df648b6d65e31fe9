"""SQL for the audit log: append, read a page, walk a chain."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import datetime

from sqlalchemy import func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from raptorflow.kit.db import dialect_name
from raptorflow.kit.tenancy import cross_tenant
from raptorflow.models import AuditEntry


class AuditRepository:
    """Audit rows of one chain (an org, or the nil UUID for account-level events)."""

    def __init__(self, session: AsyncSession, org_id: uuid.UUID) -> None:
        self.session = session
        self.org_id = org_id

    async def lock_chain(self) -> None:
        """Serialize appends to this chain until the transaction ends (SQLite serializes writers itself)."""
        if dialect_name(self.session) == "postgresql":
            await self.session.execute(
                text("SELECT pg_advisory_xact_lock(hashtextextended(:k, 0))"), {"k": f"audit:{self.org_id}"}
            )

    async def last(self) -> AuditEntry | None:
        """The newest entry of the chain."""
        async with cross_tenant(self.session):
            stmt = (
                select(AuditEntry)
                .where(AuditEntry.org_id == self.org_id)
                .order_by(AuditEntry.seq.desc())
                .limit(1)
            )
            return await self.session.scalar(stmt)

    async def add(self, entry: AuditEntry) -> None:
        """Append an entry."""
        self.session.add(entry)
        await self.session.flush()

    async def page(
        self,
        *,
        limit: int,
        before_seq: int | None,
        action: str | None,
        actor_user_id: uuid.UUID | None,
        target_id: str | None,
        since: datetime | None,
        until: datetime | None,
    ) -> Sequence[AuditEntry]:
        """Newest first, filtered, keyset-paged by seq."""
        stmt = select(AuditEntry).where(AuditEntry.org_id == self.org_id)
        if before_seq is not None:
            stmt = stmt.where(AuditEntry.seq < before_seq)
        if action:
            stmt = stmt.where(AuditEntry.action == action)
        if actor_user_id:
            stmt = stmt.where(AuditEntry.actor_user_id == actor_user_id)
        if target_id:
            stmt = stmt.where(AuditEntry.target_id == target_id)
        if since:
            stmt = stmt.where(AuditEntry.created_at >= since)
        if until:
            stmt = stmt.where(AuditEntry.created_at < until)
        stmt = stmt.order_by(AuditEntry.seq.desc()).limit(limit)
        return (await self.session.scalars(stmt)).all()

    async def by_actor(self, user_id: uuid.UUID) -> Sequence[AuditEntry]:
        """Every entry a user caused, across chains (for their data export)."""
        async with cross_tenant(self.session):
            stmt = (
                select(AuditEntry).where(AuditEntry.actor_user_id == user_id).order_by(AuditEntry.created_at)
            )
            return (await self.session.scalars(stmt)).all()

    async def scrub_actor(self, user_id: uuid.UUID) -> None:
        """Drop the IP and user agent of a deleted user's entries (the chain keeps their digest)."""
        async with cross_tenant(self.session):
            await self.session.execute(
                update(AuditEntry).where(AuditEntry.actor_user_id == user_id).values(ip=None, user_agent=None)
            )


async def chains(session: AsyncSession) -> AsyncIterator[uuid.UUID]:
    """Every chain id present (for `raptorflow audit verify`)."""
    async with cross_tenant(session):
        result = await session.scalars(select(AuditEntry.org_id).group_by(AuditEntry.org_id))
        ids = result.all()
    for org_id in ids:
        yield org_id


async def entries_in_order(session: AsyncSession, org_id: uuid.UUID) -> Sequence[AuditEntry]:
    """A whole chain, oldest first."""
    async with cross_tenant(session):
        stmt = select(AuditEntry).where(AuditEntry.org_id == org_id).order_by(AuditEntry.seq)
        return (await session.scalars(stmt)).all()


async def count(session: AsyncSession) -> int:
    """Number of audit entries across all chains."""
    async with cross_tenant(session):
        return int(await session.scalar(select(func.count()).select_from(AuditEntry)) or 0)
