"""All SQL of the TAXII server: collections, statuses, org by slug, collection pages."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import (
    ColumnElement,
    Integer,
    Select,
    Text,
    and_,
    bindparam,
    delete,
    exists,
    false,
    func,
    literal,
    literal_column,
    or_,
    select,
    tuple_,
    type_coerce,
)
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlalchemy.sql import Executable
from sqlalchemy.types import NullType

from raptorflow.intel.common import TLP
from raptorflow.intel.indicators.repository import IndicatorRepository
from raptorflow.kit.db import dialect_name
from raptorflow.kit.tenancy import TenantRepository
from raptorflow.models import Indicator, Organization, StixObject, TaxiiCollection, TaxiiStatus
from raptorflow.sharing.stix.repository import INDICATOR_COLUMNS, indicator_fragment

MILLISECOND = timedelta(milliseconds=1)


@dataclass(frozen=True, slots=True)
class PlainPage:
    """A page of indicators rendered and joined by PostgreSQL (see TaxiiRepository.plain_page)."""

    objects: bytes  # the objects' JSON, comma-separated; b"" when the page is empty
    first_added: datetime | None
    last_added: datetime | None
    last_id: uuid.UUID | None  # of the last object of the page, when more follow
    more: bool
    mixed: bool  # a stored object falls in the window: the page must merge both kinds


# Statements of plain pages (plain_page), by org, collection, filter and shape. Building one costs
# ~1 ms of SQLAlchemy construction; built once, the page size, cursor and added_after are bound per
# request. They hold no data that can go stale: a changed filter is another key.
_PLAIN_PAGES: dict[tuple[Any, ...], Executable] = {}
PLAIN_PAGES_MAX = 256


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

    async def plain_page(
        self,
        collection_id: uuid.UUID,
        spec: dict[str, Any],
        types: list[str] | None,
        creator: str,
        after: tuple[datetime, uuid.UUID] | None,
        added_after: datetime | None,
        limit: int,
    ) -> PlainPage:
        """Up to `limit` indicators of a page without match[id] or match[version], as ONE JSON text:
        PostgreSQL renders and joins the objects (one row on the wire, bytes as the response holds
        them), and says whether more follow and whether a stored object of the collection (see
        stored_page) falls in the window. One round trip; the statement is built once per org,
        collection, filter and shape (see _PLAIN_PAGES).
        """
        shape = (
            self.org_id,
            collection_id,
            orjson.dumps(spec, option=orjson.OPT_SORT_KEYS),
            tuple(types) if types is not None else None,
            creator,
            after is not None,
            added_after is not None,
        )
        stmt = _PLAIN_PAGES.get(shape)
        if stmt is None:
            stmt = self._plain_statement(collection_id, spec, types, creator, after, added_after)
            if len(_PLAIN_PAGES) >= PLAIN_PAGES_MAX:
                _PLAIN_PAGES.clear()
            _PLAIN_PAGES[shape] = stmt
        params: dict[str, Any] = {"page_limit": limit, "page_rows": limit + 1}
        if after is not None:
            params["cursor_added"], params["cursor_key"] = after
        if added_after is not None:
            params["added_after"] = added_after
        conn = await self.session.connection()
        total, text, first, last, keys, stored = (await conn.execute(stmt, params)).one()
        return PlainPage(text or b"", first, last, keys[0] if keys else None, total > limit, stored)

    def _plain_statement(
        self,
        collection_id: uuid.UUID,
        spec: dict[str, Any],
        types: list[str] | None,
        creator: str,
        after: tuple[datetime, uuid.UUID] | None,
        added_after: datetime | None,
    ) -> Executable:
        cursor, since = after is not None, added_after is not None
        stored = _bound_window(
            self._stored_base(collection_id, types, None, None).with_only_columns(literal_column("1")),
            StixObject.updated_at,
            StixObject.id,
            cursor,
            since,
        )
        # One row past the page (page_rows = page_limit + 1) says whether more follow: it is counted,
        # not joined into the text.
        rows = (
            _bound_window(self.indicators(spec), Indicator.updated_at, Indicator.id, cursor, since)
            .with_only_columns(
                Indicator.updated_at.label("added"),
                Indicator.id.label("key"),
                type_coerce(indicator_fragment(creator), Text).label("doc"),
            )
            .order_by(Indicator.updated_at, Indicator.id)
            .limit(bindparam("page_rows", type_=Integer))
            .subquery("s")
        )
        rn = func.row_number().over(order_by=(rows.c.added, rows.c.key)).label("rn")
        page = select(rows.c.added, rows.c.key, rows.c.doc, rn).subquery("p")
        limit = bindparam("page_limit", type_=Integer)
        kept = page.c.rn <= limit
        joined = func.string_agg(page.c.doc, aggregate_order_by(literal_column("','"), page.c.rn))
        return select(
            func.count(),
            type_coerce(func.convert_to(joined.filter(kept), literal_column("'UTF8'")), NullType()),
            func.min(page.c.added),
            func.max(page.c.added).filter(kept),
            func.array_agg(page.c.key).filter(page.c.rn == limit),
            exists(stored),
        )

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

    def _stored_base(
        self,
        collection_id: uuid.UUID,
        types: list[str] | None,
        versions: list[datetime] | None,
        stix_ids: list[str] | None,
    ) -> Select[Any]:
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
        return stmt

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
        stmt = self._stored_base(collection_id, types, versions, stix_ids)
        stmt = _window(stmt, StixObject.updated_at, StixObject.id, after, added_after)
        stmt = stmt.order_by(StixObject.updated_at, StixObject.id).limit(limit)
        return (await self.session.scalars(stmt)).all()


def _bound_window(stmt: Any, added: Any, key: Any, cursor: bool, added_after: bool) -> Any:
    """_window with the cursor and added_after as parameters (cursor_added, cursor_key, added_after)."""
    if added_after:
        stmt = stmt.where(added > bindparam("added_after", type_=added.type))
    if cursor:
        condition: ColumnElement[bool] = tuple_(added, key) > tuple_(
            bindparam("cursor_added", type_=added.type), bindparam("cursor_key", type_=key.type)
        )
        stmt = stmt.where(condition)
    return stmt


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
