"""All SQL of the TAXII server: collections, statuses, org by slug, collection pages."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, delete, false, literal, or_, select, tuple_

from raptorflow.intel.common import TLP
from raptorflow.intel.indicators.repository import IndicatorRepository
from raptorflow.kit.db import dialect_name
from raptorflow.kit.tenancy import TenantRepository
from raptorflow.models import Indicator, Organization, StixObject, TaxiiCollection, TaxiiStatus
from raptorflow.sharing.stix.repository import INDICATOR_COLUMNS, indicator_fragment

MILLISECOND = timedelta(milliseconds=1)


async def org_by_slug(session: Any, slug: str) -> tuple[uuid.UUID, str] | None:
    """(id, name) of the organization with this slug (organizations are not tenant rows)."""
    row = (
        await session.execute(select(Organization.id, Organization.name).where(Organization.slug == slug))
    ).first()
    return (row[0], row[1]) if row else None


class TaxiiRepository(TenantRepository):
    """TAXII collections and statuses of one organization."""

    model = TaxiiCollection

    async def collections(
        self, after: uuid.UUID | None = None, limit: int = 1000
    ) -> Sequence[TaxiiCollection]:
        """The org's collections in creation order."""
        stmt = self.scoped(select(TaxiiCollection))
        if after is not None:
            stmt = stmt.where(TaxiiCollection.id > after)
        return (await self.session.scalars(stmt.order_by(TaxiiCollection.id).limit(limit))).all()

    async def collection(self, collection_id: uuid.UUID) -> TaxiiCollection | None:
        """One collection of the org."""
        stmt = self.scoped(select(TaxiiCollection).where(TaxiiCollection.id == collection_id))
        return await self.session.scalar(stmt)

    async def title_taken(self, title: str, other_than: uuid.UUID | None = None) -> bool:
        """True when another collection of the org has this title."""
        stmt = self.scoped(select(TaxiiCollection.id).where(TaxiiCollection.title == title))
        if other_than is not None:
            stmt = stmt.where(TaxiiCollection.id != other_than)
        return await self.session.scalar(stmt) is not None

    async def add(self, row: Any) -> None:
        """Insert a collection or status."""
        self.session.add(row)
        await self.session.flush()

    async def remove(self, row: TaxiiCollection) -> None:
        """Delete a collection (its statuses cascade; stored objects keep living)."""
        await self.session.execute(
            delete(TaxiiCollection).where(TaxiiCollection.org_id == self.org_id, TaxiiCollection.id == row.id)
        )

    async def status(self, status_id: uuid.UUID) -> TaxiiStatus | None:
        """One status resource of the org."""
        stmt = select(TaxiiStatus).where(TaxiiStatus.org_id == self.org_id, TaxiiStatus.id == status_id)
        return await self.session.scalar(stmt)

    # --- collection contents -----------------------------------------------------------------------

    def indicators(self, spec: dict[str, Any]) -> Select[Any]:
        """SELECT of the live, non-false-positive indicators a collection filter admits."""
        ind = IndicatorRepository(self.session, self.org_id)
        stmt = select(Indicator).where(
            Indicator.org_id == self.org_id,
            Indicator.archived_at.is_(None),
            Indicator.false_positive.is_(False),
        )
        if spec.get("project_id"):
            stmt = stmt.where(Indicator.project_id == uuid.UUID(str(spec["project_id"])))
        if spec.get("types"):
            stmt = stmt.where(Indicator.type.in_(spec["types"]))
        if spec.get("min_score") is not None:
            stmt = stmt.where(Indicator.score >= spec["min_score"])
        if spec.get("tlp_max"):
            rank = TLP(spec["tlp_max"]).rank
            stmt = stmt.where(Indicator.tlp.in_([t.value for t in TLP if t.rank <= rank]))
        if spec.get("tags"):
            stmt = stmt.where(or_(*[ind.json_contains(Indicator.tags, t) for t in spec["tags"]]))
        return stmt

    @property
    def postgres(self) -> bool:
        """True on PostgreSQL."""
        return dialect_name(self.session) == "postgresql"

    async def indicator_json_page(
        self,
        base: Select[Any],
        creator: str,
        after: tuple[datetime, uuid.UUID] | None,
        added_after: datetime | None,
        versions: list[datetime] | None,
        ids: tuple[list[uuid.UUID], list[str]] | None,
        limit: int,
    ) -> list[tuple[datetime, uuid.UUID, str]]:
        """(date added, id, STIX JSON rendered by PostgreSQL) of a collection page (see indicator_page)."""
        stmt = self._page(base, after, added_after, versions, ids, limit).with_only_columns(
            Indicator.updated_at, Indicator.id, indicator_fragment(creator)
        )
        conn = await self.session.connection()
        return [(row[0], row[1], row[2]) for row in (await conn.execute(stmt)).all()]

    async def indicator_page(
        self,
        base: Select[Any],
        after: tuple[datetime, uuid.UUID] | None,
        added_after: datetime | None,
        versions: list[datetime] | None,
        ids: tuple[list[uuid.UUID], list[str]] | None,
        limit: int,
    ) -> Sequence[Any]:
        """INDICATOR_COLUMNS tuples of a collection in date-added (updated_at, id) order."""
        stmt = self._page(base, after, added_after, versions, ids, limit)
        # Core execution on the session's connection: plain tuples, no ORM row loading (hot path).
        conn = await self.session.connection()
        return (await conn.execute(stmt.with_only_columns(*INDICATOR_COLUMNS))).all()

    def _page(
        self,
        base: Select[Any],
        after: tuple[datetime, uuid.UUID] | None,
        added_after: datetime | None,
        versions: list[datetime] | None,
        ids: tuple[list[uuid.UUID], list[str]] | None,
        limit: int,
    ) -> Select[Any]:
        stmt = _window(base, Indicator.updated_at, Indicator.id, after, added_after)
        if versions is not None:
            # A STIX `modified` is rendered to the millisecond; updated_at keeps microseconds.
            windows = [
                and_(Indicator.updated_at >= v, Indicator.updated_at < v + MILLISECOND) for v in versions
            ]
            stmt = stmt.where(or_(*windows)) if windows else stmt.where(false())
        if ids is not None:
            natives, stix_ids = ids
            stmt = stmt.where(or_(Indicator.id.in_(natives), Indicator.stix_id.in_(stix_ids)))
        ordered: Select[Any] = stmt.order_by(Indicator.updated_at, Indicator.id).limit(limit)
        return ordered

    async def stored_page(
        self,
        collection_id: uuid.UUID,
        types: list[str] | None,
        after: tuple[datetime, uuid.UUID] | None,
        added_after: datetime | None,
        versions: list[datetime] | None,
        stix_ids: list[str] | None,
        limit: int,
    ) -> Sequence[StixObject]:
        """Objects written to the collection that became no indicator, in date-added order."""
        stmt = select(StixObject).where(
            StixObject.org_id == self.org_id,
            StixObject.collection_id == collection_id,
            or_(StixObject.native_kind.is_(None), StixObject.native_kind != "indicator"),
        )
        if types is not None:
            stmt = stmt.where(StixObject.type.in_(types))
        if versions is not None:
            stmt = stmt.where(StixObject.modified.in_(versions)) if versions else stmt.where(false())
        if stix_ids is not None:
            stmt = stmt.where(StixObject.stix_id.in_(stix_ids))
        stmt = _window(stmt, StixObject.updated_at, StixObject.id, after, added_after)
        stmt = stmt.order_by(StixObject.updated_at, StixObject.id).limit(limit)
        return (await self.session.scalars(stmt)).all()


def _window(
    stmt: Any,
    added: Any,
    key: Any,
    after: tuple[datetime, uuid.UUID] | None,
    added_after: datetime | None,
) -> Any:
    if added_after is not None:
        stmt = stmt.where(added > added_after)
    if after is not None:
        # A row comparison, not `a > x OR (a = x AND k > y)`: PostgreSQL starts the index scan at the
        # cursor instead of reading and filtering every earlier entry (page 500 of a collection too).
        condition: ColumnElement[bool] = tuple_(added, key) > tuple_(
            literal(after[0], added.type), literal(after[1], key.type)
        )
        stmt = stmt.where(condition)
    return stmt
