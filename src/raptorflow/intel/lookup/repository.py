"""SQL of lookups: related actors and campaigns of many indicators in one query."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Row, literal, select, union_all

from raptorflow.intel.indicators.repository import SQLITE_KEY_CHUNK, match_keys
from raptorflow.kit.db import dialect_name
from raptorflow.kit.tenancy import TenantRepository
from raptorflow.models import Campaign, Indicator, Organization, Relationship, ThreatActor

ID_CHUNK = 5_000


LOOKUP_COLUMNS = (
    Indicator.id,
    Indicator.type,
    Indicator.value,
    Indicator.score,
    Indicator.classification,
    Indicator.tlp,
    Indicator.tags,
    Indicator.valid_until,
    Indicator.false_positive,
    Indicator.last_seen,
    Indicator.sightings_count,
    Indicator.archived_at,
)


class LookupRepository(TenantRepository):
    """Read-only queries of the lookup path (plain rows, not ORM objects: this is the hot path)."""

    model = Relationship

    async def find(self, keys: Sequence[tuple[str, str]]) -> tuple[list[Row[Any]], dict[str, Any]]:
        """Live-or-not indicators for (type, value) keys, and the org's settings, in one query per chunk."""
        if not keys:
            return [], {}
        org_settings = select(Organization.settings).where(Organization.id == self.org_id).scalar_subquery()
        postgres = dialect_name(self.session) == "postgresql"
        rows: list[Row[Any]] = []
        chunk = len(keys) if postgres else SQLITE_KEY_CHUNK
        for start in range(0, len(keys), chunk):
            part = keys[start : start + chunk]
            stmt = select(*LOOKUP_COLUMNS, org_settings.label("org_settings"))
            stmt = match_keys(stmt.where(Indicator.org_id == self.org_id), part, postgres=postgres)
            rows.extend((await self.session.execute(stmt)).all())  # type: ignore[arg-type]
        settings = (rows[0].org_settings or {}) if rows else {}
        return rows, settings

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
