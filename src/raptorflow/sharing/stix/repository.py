"""All SQL of STIX sharing: streaming indicator columns, context rows by id, stored STIX objects."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Collection, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Select, Text, and_, cast, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from raptorflow.kit.db import dialect_name
from raptorflow.kit.tenancy import TenantRepository
from raptorflow.models import (
    AttackObject,
    Campaign,
    Indicator,
    Organization,
    Project,
    Relationship,
    Report,
    Sighting,
    StixObject,
    ThreatActor,
    Vulnerability,
)

# The indicator columns a STIX indicator is rendered from, in this order (rows are plain tuples). Table
# columns, not ORM attributes, so results skip ORM row loading; JSON lists come as text for orjson.
_T = Indicator.__table__.c
INDICATOR_COLUMNS = (
    _T.id,
    _T.type,
    _T.value,
    _T.classification,
    _T.confidence,
    _T.tlp,
    cast(_T.tags, Text).label("tags"),
    _T.description,
    cast(_T.attack_techniques, Text).label("attack_techniques"),
    _T.first_seen,
    _T.valid_from,
    _T.valid_until,
    _T.created_at,
    _T.updated_at,
    _T.stix_id,
)
CONTEXT_MODELS: dict[str, Any] = {
    "threat-actor": ThreatActor,
    "campaign": Campaign,
    "vulnerability": Vulnerability,
    "report": Report,
}
CHUNK = 5_000
STREAM_BATCH = 2_000


class StixRepository(TenantRepository):
    """STIX reads and writes of one organization."""

    model = StixObject

    @property
    def postgres(self) -> bool:
        """True on PostgreSQL."""
        return dialect_name(self.session) == "postgresql"

    async def org_name(self) -> str:
        """The organization's display name (its STIX identity)."""
        name = await self.session.scalar(select(Organization.name).where(Organization.id == self.org_id))
        return name or "RaptorFlow organization"

    async def project_exists(self, project_id: uuid.UUID) -> bool:
        """True when the project is this org's."""
        found = await self.session.scalar(
            select(Project.id).where(Project.org_id == self.org_id, Project.id == project_id)
        )
        return found is not None

    async def stream_indicators(self, stmt: Select[Any]) -> AsyncIterator[Sequence[Any]]:
        """Batches of INDICATOR_COLUMNS tuples for an indicator SELECT (streamed, bounded memory)."""
        stmt = stmt.with_only_columns(*INDICATOR_COLUMNS).order_by(Indicator.id)
        conn = await self.session.connection()
        result = await conn.stream(stmt.execution_options(yield_per=STREAM_BATCH))
        async for batch in result.partitions(STREAM_BATCH):
            yield batch

    async def indicator_page(self, stmt: Select[Any], limit: int) -> Sequence[Any]:
        """One page of INDICATOR_COLUMNS tuples for an already ordered and limited SELECT."""
        conn = await self.session.connection()
        return (await conn.execute(stmt.with_only_columns(*INDICATOR_COLUMNS).limit(limit))).all()

    async def context_rows(self, kind: str, ids: Collection[uuid.UUID]) -> list[Any]:
        """Context objects (threat-actor, campaign, vulnerability, report) of the org by id."""
        model = CONTEXT_MODELS[kind]
        out: list[Any] = []
        wanted = list(ids)
        for start in range(0, len(wanted), CHUNK):
            part = wanted[start : start + CHUNK]
            stmt = select(model).where(model.org_id == self.org_id, model.id.in_(part))
            out += (await self.session.scalars(stmt)).all()
        return out

    async def context_in_project(self, kind: str, project_id: uuid.UUID) -> list[Any]:
        """Live context objects of one kind in a project."""
        model = CONTEXT_MODELS[kind]
        stmt = select(model).where(
            model.org_id == self.org_id, model.project_id == project_id, model.archived_at.is_(None)
        )
        return list((await self.session.scalars(stmt)).all())

    async def relationships_among(self, ids: Collection[uuid.UUID]) -> list[Relationship]:
        """Relationships whose both ends are among `ids`."""
        wanted = list(ids)
        found: dict[uuid.UUID, Relationship] = {}
        for start in range(0, len(wanted), CHUNK):
            part = wanted[start : start + CHUNK]
            stmt = select(Relationship).where(
                Relationship.org_id == self.org_id,
                or_(Relationship.source_id.in_(part), Relationship.target_id.in_(part)),
            )
            for row in (await self.session.scalars(stmt)).all():
                found[row.id] = row
        keep = set(wanted)
        return [r for r in found.values() if r.source_id in keep and r.target_id in keep]

    async def sightings_of(self, indicator_ids: Select[Any] | Collection[uuid.UUID]) -> list[Sighting]:
        """Sightings of the indicators a SELECT of ids (or a list of ids) names."""
        if isinstance(indicator_ids, Select):
            stmt = select(Sighting).where(
                Sighting.org_id == self.org_id, Sighting.indicator_id.in_(indicator_ids)
            )
            return list((await self.session.scalars(stmt)).all())
        out: list[Sighting] = []
        wanted = list(indicator_ids)
        for start in range(0, len(wanted), CHUNK):
            stmt = select(Sighting).where(
                Sighting.org_id == self.org_id, Sighting.indicator_id.in_(wanted[start : start + CHUNK])
            )
            out += (await self.session.scalars(stmt)).all()
        return out

    async def techniques(self, ids: Collection[str]) -> dict[str, AttackObject]:
        """ATT&CK techniques of the shared catalog by external id (absent when no catalog is loaded)."""
        if not ids:
            return {}
        rows = await self.session.scalars(
            select(AttackObject).where(AttackObject.kind == "technique", AttackObject.external_id.in_(ids))
        )
        return {r.external_id: r for r in rows.all() if r.external_id}

    # --- stored STIX objects ------------------------------------------------------------------------

    async def stored(self, stix_ids: Collection[str]) -> dict[str, StixObject]:
        """Stored objects by STIX id."""
        out: dict[str, StixObject] = {}
        wanted = list(stix_ids)
        for start in range(0, len(wanted), CHUNK):
            stmt = self.scoped(
                select(StixObject).where(StixObject.stix_id.in_(wanted[start : start + CHUNK]))
            )
            for row in (await self.session.scalars(stmt)).all():
                out[row.stix_id] = row
        return out

    async def native_by_stix_id(self, model: Any, stix_ids: Collection[str]) -> dict[str, Any]:
        """Rows of a native table (indicators, actors, ...) by their stored STIX id."""
        out: dict[str, Any] = {}
        wanted = list(stix_ids)
        for start in range(0, len(wanted), CHUNK):
            stmt = select(model).where(
                model.org_id == self.org_id, model.stix_id.in_(wanted[start : start + CHUNK])
            )
            for row in (await self.session.scalars(stmt)).all():
                out[row.stix_id] = row
        return out

    async def upsert_stored(self, rows: list[dict[str, Any]]) -> None:
        """Insert or replace stored objects (keyed by org and STIX id) in one statement."""
        if not rows:
            return
        dialect: Any = postgresql if self.postgres else sqlite
        stmt = dialect.insert(StixObject)
        stmt = stmt.on_conflict_do_update(
            index_elements=["org_id", "stix_id"],
            set_={
                "type": stmt.excluded.type,
                "modified": stmt.excluded.modified,
                "object": stmt.excluded.object,
                "native_kind": stmt.excluded.native_kind,
                "native_id": stmt.excluded.native_id,
                "collection_id": stmt.excluded.collection_id,
                "updated_at": stmt.excluded.updated_at,
            },
        )
        await self.session.execute(stmt, rows)

    async def set_indicator_stix_ids(self, pairs: dict[uuid.UUID, str]) -> None:
        """Remember the producer's STIX id on indicators that have none yet."""
        if not pairs:
            return
        ids = list(pairs)
        have = await self.session.execute(
            select(Indicator.id).where(
                Indicator.org_id == self.org_id, Indicator.id.in_(ids), Indicator.stix_id.is_(None)
            )
        )
        rows = [{"id": i, "stix_id": pairs[i]} for (i,) in have.all()]
        if rows:
            await self.session.execute(update(Indicator), rows)

    async def stored_page(
        self, collection_id: uuid.UUID, after: tuple[datetime, uuid.UUID] | None, limit: int
    ) -> Sequence[StixObject]:
        """Objects written to a TAXII collection that became no native row, in date-added order."""
        stmt = self.scoped(
            select(StixObject).where(
                StixObject.collection_id == collection_id, StixObject.native_id.is_(None)
            )
        )
        if after is not None:
            stmt = stmt.where(
                or_(
                    StixObject.updated_at > after[0],
                    and_(StixObject.updated_at == after[0], StixObject.id > after[1]),
                )
            )
        stmt = stmt.order_by(StixObject.updated_at, StixObject.id).limit(limit)
        return list((await self.session.scalars(stmt)).all())
