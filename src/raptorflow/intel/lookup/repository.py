"""SQL of lookups: related actors and campaigns of many indicators in one query."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import literal, select, union_all

from raptorflow.kit.tenancy import TenantRepository
from raptorflow.models import Campaign, Relationship, ThreatActor

ID_CHUNK = 5_000


class LookupRepository(TenantRepository):
    """Read-only queries of the lookup path."""

    model = Relationship

    async def related(
        self, indicator_ids: Sequence[uuid.UUID]
    ) -> list[tuple[uuid.UUID, str, uuid.UUID, str, str]]:
        """(indicator, kind, object id, name, relationship type): actors and campaigns linked either way."""
        out: list[tuple[uuid.UUID, str, uuid.UUID, str, str]] = []
        # Four uses of the id list per statement; both drivers cap bound parameters near 32k.
        for start in range(0, len(indicator_ids), ID_CHUNK):
            out += await self._related(indicator_ids[start : start + ID_CHUNK])
        return out

    async def _related(
        self, indicator_ids: Sequence[uuid.UUID]
    ) -> list[tuple[uuid.UUID, str, uuid.UUID, str, str]]:
        parts = []
        for model, kind in ((ThreatActor, "threat-actor"), (Campaign, "campaign")):
            parts.append(
                select(
                    Relationship.source_id,
                    literal(kind),
                    model.id,
                    model.name,
                    Relationship.relationship_type,
                )
                .join(model, model.id == Relationship.target_id)
                .where(
                    Relationship.org_id == self.org_id,
                    model.org_id == self.org_id,
                    Relationship.source_id.in_(indicator_ids),
                    Relationship.target_type == kind,
                )
            )
            parts.append(
                select(
                    Relationship.target_id,
                    literal(kind),
                    model.id,
                    model.name,
                    Relationship.relationship_type,
                )
                .join(model, model.id == Relationship.source_id)
                .where(
                    Relationship.org_id == self.org_id,
                    model.org_id == self.org_id,
                    Relationship.target_id.in_(indicator_ids),
                    Relationship.source_type == kind,
                )
            )
        rows = await self.session.execute(union_all(*parts))
        return [(a, b, c, d, e) for a, b, c, d, e in rows.all()]
