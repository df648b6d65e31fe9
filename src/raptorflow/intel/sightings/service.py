"""Sighting rules: sane time windows, bounded counts, and the indicator refreshed in the same transaction."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from raptorflow.auth.principal import OrgContext
from raptorflow.intel.common import ensure_may_remove
from raptorflow.intel.sightings.repository import SightingRepository
from raptorflow.intel.sightings.schemas import SightingCreate
from raptorflow.kit.db import new_id, utcnow
from raptorflow.kit.errors import InvalidInput, NotFound
from raptorflow.models import Sighting
from raptorflow.webhooks.service import emit

# Sensors' clocks drift; a sighting up to this far in the future is taken as "now-ish".
CLOCK_SKEW = timedelta(minutes=5)


class SightingService:
    """Sightings of one org, for one caller; never commits."""

    def __init__(self, session: AsyncSession, ctx: OrgContext) -> None:
        self.session = session
        self.ctx = ctx
        self.repo = SightingRepository(session, ctx.org_id)

    async def get(self, sighting_id: uuid.UUID) -> Sighting:
        """One sighting; 404 when absent or another org's."""
        sighting = await self.repo.get(sighting_id)
        if sighting is None:
            raise NotFound()
        return sighting

    async def create(self, indicator_id: uuid.UUID, body: SightingCreate) -> Sighting:
        """Record a sighting and refresh the indicator's last_seen and sightings_count."""
        now = utcnow()
        latest = now + CLOCK_SKEW
        first = body.first_seen.astimezone(UTC) if body.first_seen else None
        last = body.last_seen.astimezone(UTC) if body.last_seen else None
        if first is not None and first > latest:
            raise InvalidInput("first_seen", "is in the future")
        if last is None:
            last = max(now, first) if first is not None else now
        if last > latest:
            raise InvalidInput("last_seen", "is in the future")
        if first is None:
            first = last
        if last < first:
            raise InvalidInput("last_seen", "is before first_seen")
        # The UPDATE doubles as the existence check (and locks the indicator row until commit).
        if not await self.repo.count_towards(indicator_id, body.count, last):
            raise NotFound()
        sighting_id = new_id()
        sighting = Sighting(
            id=sighting_id,
            org_id=self.ctx.org_id,
            indicator_id=indicator_id,
            count=body.count,
            first_seen=first,
            last_seen=last,
            where=body.where,
            source=body.source,
            note=body.note,
            stix_id=f"sighting--{sighting_id}",
            created_by=self.ctx.principal.user_id,
        )
        await self.repo.add(sighting)
        data = {
            "id": str(sighting_id),
            "indicator_id": str(indicator_id),
            "count": body.count,
            "source": body.source,
        }
        await emit(self.session, self.ctx.org_id, "sighting.added", data)
        return sighting

    async def list(self, indicator_id: uuid.UUID, after: uuid.UUID | None, limit: int) -> Sequence[Sighting]:
        """A page of an indicator's sightings, newest first; 404 when the indicator is not the org's."""
        if not await self.repo.indicator_exists(indicator_id):
            raise NotFound()
        return await self.repo.for_indicator(indicator_id, after, limit)

    async def delete(self, sighting_id: uuid.UUID) -> None:
        """Delete a sighting (editors their own, admins any); its count comes off the indicator.

        last_seen stays: it may also have come from imports or other sightings.
        """
        sighting = await self.get(sighting_id)
        ensure_may_remove(self.ctx, sighting.created_by)
        await self.repo.uncount(sighting.indicator_id, sighting.count)
        await self.repo.remove(sighting)
