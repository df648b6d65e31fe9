"""All SQL of the object graph: resolving ids to objects, relationships, and the per-hop edge query."""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from typing import Any, NamedTuple

from sqlalchemy import (
    ColumnElement,
    String,
    Text,
    and_,
    case,
    cast,
    delete,
    func,
    literal,
    literal_column,
    null,
    or_,
    select,
    true,
)
from sqlalchemy.dialects import postgresql, sqlite

from raptorflow.kit.db import dialect_name
from raptorflow.kit.tenancy import TenantRepository
from raptorflow.models import Campaign, Indicator, Project, Relationship, Report, ThreatActor, Vulnerability

# Object kind (STIX name where STIX has one) → table. Projects resolve but are containers, not graph nodes.
OBJECT_MODELS: dict[str, Any] = {
    "indicator": Indicator,
    "threat-actor": ThreatActor,
    "campaign": Campaign,
    "vulnerability": Vulnerability,
    "report": Report,
    "project": Project,
}
# The column a node is labelled with in graph views.
LABEL_COLUMNS: dict[str, Any] = {
    "indicator": Indicator.value,
    "threat-actor": ThreatActor.name,
    "campaign": Campaign.name,
    "vulnerability": Vulnerability.cve_id,
    "report": Report.title,
    "project": Project.name,
}
LABEL_MAX = 200
# Canonical UUID text is 36 characters; a report may reference `kind--<uuid>` as well as `<uuid>`.
UUID_TEXT_LENGTH = 36


class RawEdge(NamedTuple):
    """An edge as the hop query returns it: ids as text (each database spells UUIDs its own way)."""

    id: str | None
    source: str
    target: str
    relationship_type: str


class ObjectRepository(TenantRepository):
    """Which object of this org an id names; a few UNION ALL queries, never one query per table per id."""

    def _union(self, kinds: Collection[str], ids: Collection[uuid.UUID], with_label: bool) -> Any:
        parts = []
        for kind in kinds:
            model = OBJECT_MODELS[kind]
            columns = [literal(kind, String).label("kind"), model.id.label("id")]
            if with_label:
                columns.append(func.substr(LABEL_COLUMNS[kind], 1, LABEL_MAX).label("label"))
            parts.append(select(*columns).where(model.org_id == self.org_id, model.id.in_(list(ids))))
        return parts[0].union_all(*parts[1:]) if len(parts) > 1 else parts[0]

    async def kinds_of(self, ids: Collection[uuid.UUID], kinds: Collection[str]) -> dict[uuid.UUID, str]:
        """The kind of each id that names an object of this org (ids of other orgs are simply absent)."""
        if not ids or not kinds:
            return {}
        rows = await self.session.execute(self._union(kinds, ids, with_label=False))
        return {row.id: row.kind for row in rows}

    async def labels_of(
        self, ids: Collection[uuid.UUID], kinds: Collection[str]
    ) -> dict[uuid.UUID, tuple[str, str]]:
        """(kind, label) of each id that names an object of this org."""
        if not ids or not kinds:
            return {}
        rows = await self.session.execute(self._union(kinds, ids, with_label=True))
        return {row.id: (row.kind, row.label or "") for row in rows}

    async def row(self, kind: str, object_id: uuid.UUID) -> Any | None:
        """The ORM row of an object whose kind is known."""
        model = OBJECT_MODELS[kind]
        return await self.session.scalar(
            select(model).where(model.org_id == self.org_id, model.id == object_id)
        )


class RelationshipRepository(TenantRepository):
    """Relationships of one organization."""

    model = Relationship

    @property
    def postgres(self) -> bool:
        """True on PostgreSQL."""
        return dialect_name(self.session) == "postgresql"

    async def get(self, relationship_id: uuid.UUID) -> Relationship | None:
        """One relationship by id."""
        return await self.session.scalar(
            self.scoped(select(Relationship).where(Relationship.id == relationship_id))
        )

    async def find(
        self, source_id: uuid.UUID, target_id: uuid.UUID, relationship_type: str
    ) -> Relationship | None:
        """The relationship with this natural key, if any."""
        return await self.session.scalar(
            self.scoped(
                select(Relationship).where(
                    Relationship.source_id == source_id,
                    Relationship.target_id == target_id,
                    Relationship.relationship_type == relationship_type,
                )
            )
        )

    async def insert_new(self, values: dict[str, Any]) -> uuid.UUID | None:
        """Insert a relationship unless its natural key exists (even a concurrent twin); its id or None."""
        insert = postgresql.insert if self.postgres else sqlite.insert
        stmt = (
            insert(Relationship)
            .values(org_id=self.org_id, **values)
            .on_conflict_do_nothing(index_elements=["org_id", "source_id", "target_id", "relationship_type"])
            .returning(Relationship.id)
        )
        return await self.session.scalar(stmt)

    async def page(
        self,
        *,
        object_id: uuid.UUID | None,
        relationship_type: str | None,
        after: uuid.UUID | None,
        limit: int,
    ) -> Sequence[Relationship]:
        """Relationships by id, optionally touching one object (either end) or of one type."""
        stmt = self.scoped(select(Relationship))
        if object_id is not None:
            stmt = stmt.where(or_(Relationship.source_id == object_id, Relationship.target_id == object_id))
        if relationship_type is not None:
            stmt = stmt.where(Relationship.relationship_type == relationship_type)
        if after is not None:
            stmt = stmt.where(Relationship.id > after)
        return (await self.session.scalars(stmt.order_by(Relationship.id).limit(limit))).all()

    async def remove(self, relationship: Relationship) -> None:
        """Delete a relationship."""
        await self.session.delete(relationship)
        await self.session.flush()

    async def detach(self, object_ids: Collection[uuid.UUID]) -> int:
        """Delete every relationship touching these objects (when they are deleted); how many went."""
        if not object_ids:
            return 0
        ids = list(object_ids)
        result = await self.session.execute(
            delete(Relationship).where(
                Relationship.org_id == self.org_id,
                or_(Relationship.source_id.in_(ids), Relationship.target_id.in_(ids)),
            )
        )
        return int(getattr(result, "rowcount", 0) or 0)

    def _report_refs(self, frontier: list[uuid.UUID], frontier_text: list[str], within: bool) -> Any:
        """Report → referenced object pairs with one end (both when `within`) in the frontier, as text."""
        if self.postgres:
            # Only arrays are expanded: a malformed object_refs value must not fail the whole graph.
            refs = func.jsonb_array_elements(
                case(
                    (func.jsonb_typeof(Report.object_refs) == "array", Report.object_refs),
                    else_=cast(literal("[]"), postgresql.JSONB),
                )
            ).table_valued("value")
            element = refs.c.value
            ref: ColumnElement[Any] = func.coalesce(
                func.jsonb_extract_path_text(element, "id"),
                case(
                    (
                        func.jsonb_typeof(element) == "string",
                        element.op("#>>", return_type=Text)(literal_column("'{}'")),
                    )
                ),
            )
            suffix = func.lower(func.right(ref, UUID_TEXT_LENGTH))
        else:
            refs = func.json_each(Report.object_refs).table_valued("value", "type")
            ref = case(
                (refs.c.type == "object", func.json_extract(refs.c.value, "$.id")),
                (refs.c.type == "text", refs.c.value),
            )
            suffix = func.lower(func.substr(ref, -UUID_TEXT_LENGTH))
        return (
            select(
                cast(null(), String).label("id"),
                cast(Report.id, String).label("source"),
                cast(ref, String).label("target"),
                literal("object-ref", String).label("relationship_type"),
            )
            .select_from(Report)
            .join(refs, true())
            .where(
                Report.org_id == self.org_id,
                ref.is_not(None),
                (and_ if within else or_)(Report.id.in_(frontier), suffix.in_(frontier_text)),
            )
        )

    async def hop(
        self, frontier: Collection[uuid.UUID], limit: int, *, within: bool = False
    ) -> list[RawEdge]:
        """Every edge touching the frontier (both directions; only edges inside it when `within`):
        relationships and report references, in one query."""
        if not frontier:
            return []
        ids = list(frontier)
        relationships = select(
            cast(Relationship.id, String).label("id"),
            cast(Relationship.source_id, String).label("source"),
            cast(Relationship.target_id, String).label("target"),
            Relationship.relationship_type.label("relationship_type"),
        ).where(
            Relationship.org_id == self.org_id,
            (and_ if within else or_)(Relationship.source_id.in_(ids), Relationship.target_id.in_(ids)),
        )
        stmt = relationships.union_all(self._report_refs(ids, [str(i) for i in ids], within)).limit(limit)
        rows = await self.session.execute(stmt)
        return [RawEdge(r.id, r.source, r.target, r.relationship_type) for r in rows]
