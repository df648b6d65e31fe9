"""All SQL of sightings, and the set-based refresh of the indicator they count towards."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import case, literal, select, update

from raptorflow.kit.db import UTCDateTime
from raptorflow.kit.tenancy import TenantRepository
from raptorflow.models import Indicator, Sighting


class SightingRepository(TenantRepository):
    """Sightings of one organization."""

    model = Sighting

    async def get(self, sighting_id: uuid.UUID) -> Sighting | None:
        """One sighting by id."""
        return await self.session.scalar(self.scoped(select(Sighting).where(Sighting.id == sighting_id)))

    async def indicator_exists(self, indicator_id: uuid.UUID) -> bool:
        """True when the indicator is one of this org's."""
        stmt = select(Indicator.id).where(Indicator.org_id == self.org_id, Indicator.id == indicator_id)
        return (await self.session.scalar(stmt)) is not None

    async def for_indicator(
        self, indicator_id: uuid.UUID, after: uuid.UUID | None, limit: int
    ) -> Sequence[Sighting]:
        """Sightings of an indicator, newest first (UUIDv7 ids follow creation time)."""
        stmt = self.scoped(select(Sighting).where(Sighting.indicator_id == indicator_id))
        if after is not None:
            stmt = stmt.where(Sighting.id < after)
        return (await self.session.scalars(stmt.order_by(Sighting.id.desc()).limit(limit))).all()

    async def add(self, sighting: Sighting) -> None:
        """Insert a sighting."""
        self.session.add(sighting)
        await self.session.flush()

    async def remove(self, sighting: Sighting) -> None:
        """Delete a sighting."""
        await self.session.delete(sighting)
        await self.session.flush()

    async def count_towards(self, indicator_id: uuid.UUID, count: int, last_seen: datetime) -> bool:
        """Add a sighting to its indicator in one UPDATE (no read-modify-write); False when it is not ours.

        The database computes `last_seen = max(last_seen, :seen)` and `sightings_count + :count` under
        the row lock, so concurrent sightings never lose each other's counts.
        """
        seen = literal(last_seen, UTCDateTime())
        stmt = (
            update(Indicator)
            .where(Indicator.org_id == self.org_id, Indicator.id == indicator_id)
            .values(
                last_seen=case((Indicator.last_seen < seen, seen), else_=Indicator.last_seen),
                sightings_count=Indicator.sightings_count + count,
            )
            .returning(Indicator.id)
            .execution_options(synchronize_session=False)
        )
        return (await self.session.scalar(stmt)) is not None

    async def uncount(self, indicator_id: uuid.UUID, count: int) -> None:
        """Take a deleted sighting's count back off its indicator, never below zero, in one UPDATE."""
        await self.session.execute(
            update(Indicator)
            .where(Indicator.org_id == self.org_id, Indicator.id == indicator_id)
            .values(
                sightings_count=case(
                    (Indicator.sightings_count > count, Indicator.sightings_count - count), else_=0
                )
            )
            .execution_options(synchronize_session=False)
        )
