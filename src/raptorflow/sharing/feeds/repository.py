"""SQL of feeds."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from raptorflow.kit.tenancy import TenantRepository
from raptorflow.models import Feed


class FeedRepository(TenantRepository):
    """Feeds of one org."""

    model = Feed

    async def get(self, feed_id: uuid.UUID) -> Feed | None:
        """One feed by id."""
        return await self.session.scalar(self.scoped(select(Feed).where(Feed.id == feed_id)))

    async def by_name(self, name: str) -> Feed | None:
        """The feed with this name."""
        return await self.session.scalar(self.scoped(select(Feed).where(Feed.name == name)))

    async def page(self, before: uuid.UUID | None, limit: int) -> Sequence[Feed]:
        """Newest first."""
        stmt = self.scoped(select(Feed))
        if before is not None:
            stmt = stmt.where(Feed.id < before)
        return (await self.session.scalars(stmt.order_by(Feed.id.desc()).limit(limit))).all()

    async def delete(self, feed: Feed) -> None:
        """Remove a feed (its past imports keep their counts)."""
        await self.session.delete(feed)
        await self.session.flush()

    @staticmethod
    async def due_candidates(session: AsyncSession, limit: int) -> Sequence[Feed]:
        """Enabled, scheduled feeds of every org not queued or running now (the caller is cross-tenant)."""
        stmt = (
            select(Feed)
            .where(
                Feed.enabled.is_(True),
                Feed.schedule_minutes.is_not(None),
                or_(Feed.last_status.is_(None), Feed.last_status.not_in(("queued", "running"))),
            )
            .order_by(Feed.last_run_at.asc().nulls_first(), Feed.id)
            .limit(limit)
        )
        return (await session.scalars(stmt)).all()
