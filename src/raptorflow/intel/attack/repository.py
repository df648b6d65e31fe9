"""SQL for the ATT&CK catalog: set-based upserts of a bundle and the browse queries (not tenant data)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, Literal
from typing import cast as cast_type

import orjson
from sqlalchemy import ColumnElement, Table, Text, and_, cast, exists, false, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute, aliased

from raptorflow.kit.db import dialect_name
from raptorflow.models import AttackDomain, AttackObject, AttackRelationship

BATCH = 1000
OBJECTS = cast_type(Table, AttackObject.__table__)
RELATIONSHIPS = cast_type(Table, AttackRelationship.__table__)


def like_escape(value: str) -> str:
    """`value` with LIKE wildcards escaped (escape character: backslash)."""
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def contains_ci(column: InstrumentedAttribute[Any], value: str) -> ColumnElement[bool]:
    """Case-insensitive substring match."""
    return column.ilike(f"%{like_escape(value)}%", escape="\\")


def json_list_has(column: InstrumentedAttribute[list[str]], value: str) -> ColumnElement[bool]:
    """True when a JSON list of strings holds `value` (case-insensitive), on SQLite and PostgreSQL alike.

    Both store the list as `["a", "b"]` text (SQLite: json.dumps; PostgreSQL: jsonb::text), so the
    quoted element is matched as a whole, never as a substring of another element.
    """
    quoted = orjson.dumps(value.lower()).decode()
    return func.lower(cast(column, Text)).like(f"%{like_escape(quoted)}%", escape="\\")


def _batches(rows: Sequence[Any]) -> Iterable[Sequence[Any]]:
    for start in range(0, len(rows), BATCH):
        yield rows[start : start + BATCH]


class AttackRepository:
    """The attack_objects and attack_relationships tables."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    # --- loading -------------------------------------------------------------------------------

    async def _upsert(self, table: Table, rows: Sequence[dict[str, Any]]) -> None:
        insert = pg_insert if dialect_name(self.session) == "postgresql" else sqlite_insert
        stmt = insert(table)
        key = [table.c.stix_id, table.c.domain]
        upsert = stmt.on_conflict_do_update(
            index_elements=key,
            set_={c.name: stmt.excluded[c.name] for c in table.columns if c not in key},
        )
        # With RETURNING, SQLAlchemy's "insertmanyvalues" sends each list of parameter sets as multi-row
        # VALUES statements (1,000 rows each) from one compiled statement; compiling a fresh
        # .values([...]) per batch instead costs seconds for the Enterprise bundle.
        returning = upsert.returning(table.c.stix_id)
        for batch in _batches(rows):
            result = await self.session.execute(
                returning, list(batch), execution_options={"insertmanyvalues_page_size": BATCH}
            )
            result.close()

    async def upsert_objects(self, rows: Sequence[dict[str, Any]]) -> None:
        """Insert or update catalog objects, 1,000 per statement."""
        await self._upsert(OBJECTS, rows)

    async def upsert_relationships(self, rows: Sequence[dict[str, Any]]) -> None:
        """Insert or update relationships, 1,000 per statement."""
        await self._upsert(RELATIONSHIPS, rows)

    async def visible_object_ids(self, domain: str) -> set[str]:
        """STIX ids of the domain's objects that are currently shown."""
        rows = await self.session.scalars(
            select(AttackObject.stix_id).where(AttackObject.domain == domain, AttackObject.hidden == false())
        )
        return set(rows.all())

    async def visible_relationship_ids(self, domain: str) -> set[str]:
        """STIX ids of the domain's relationships that are currently shown."""
        rows = await self.session.scalars(
            select(AttackRelationship.stix_id).where(
                AttackRelationship.domain == domain, AttackRelationship.hidden == false()
            )
        )
        return set(rows.all())

    async def hide(
        self, model: type[AttackObject] | type[AttackRelationship], domain: str, stix_ids: Sequence[str]
    ) -> None:
        """Mark a domain's rows hidden (they left its bundle), 1,000 ids per statement."""
        for batch in _batches(sorted(stix_ids)):
            await self.session.execute(
                update(model).where(model.domain == domain, model.stix_id.in_(batch)).values(hidden=True),
                execution_options={"synchronize_session": False},
            )

    async def record_domain(self, domain: str, attack_version: str | None, synced_at: datetime) -> None:
        """Remember that a domain was loaded, and the ATT&CK release its bundle declared."""
        found = await self.session.get(AttackDomain, domain)
        if found is None:
            self.session.add(AttackDomain(domain=domain, attack_version=attack_version, synced_at=synced_at))
        else:
            found.attack_version, found.synced_at = attack_version, synced_at
        await self.session.flush()

    async def attack_version(self, domain: str) -> str | None:
        """The ATT&CK release of the domain's last loaded bundle, when it declared one."""
        return await self.session.scalar(
            select(AttackDomain.attack_version).where(AttackDomain.domain == domain)
        )

    async def count_visible(self) -> dict[str, int]:
        """Shown objects per kind, and shown relationships under "relationship"."""
        rows = await self.session.execute(
            select(AttackObject.kind, func.count())
            .where(AttackObject.hidden == false())
            .group_by(AttackObject.kind)
        )
        counts = {kind: int(n) for kind, n in rows.all()}
        counts["relationship"] = int(
            await self.session.scalar(
                select(func.count())
                .select_from(AttackRelationship)
                .where(AttackRelationship.hidden == false())
            )
            or 0
        )
        return counts

    # --- browsing ------------------------------------------------------------------------------

    async def tactics(self, domain: str | None = None) -> Sequence[AttackObject]:
        """Every shown tactic (of one domain when given)."""
        stmt = select(AttackObject).where(AttackObject.kind == "tactic", AttackObject.hidden == false())
        if domain is not None:
            stmt = stmt.where(AttackObject.domain == domain)
        rows = await self.session.scalars(
            stmt.order_by(AttackObject.domain, AttackObject.external_id, AttackObject.stix_id)
        )
        return rows.all()

    async def tactics_by_shortname(self, shortnames: Sequence[str], domain: str) -> Sequence[AttackObject]:
        """Shown tactics of a domain with these shortnames (domains reuse shortnames: collection...)."""
        if not shortnames:
            return []
        rows = await self.session.scalars(
            select(AttackObject).where(
                AttackObject.kind == "tactic",
                AttackObject.hidden == false(),
                AttackObject.domain == domain,
                AttackObject.shortname.in_(list(shortnames)),
            )
        )
        return rows.all()

    async def by_external_id(
        self, kind: str, external_id: str, domain: str | None = None
    ) -> AttackObject | None:
        """The shown object of a kind with this external id (T1059.001, G0007, S0002, TA0002, M1036).

        Without a domain, the copy of the first domain by name (Enterprise before ICS and Mobile).
        """
        stmt = select(AttackObject).where(
            AttackObject.kind == kind,
            AttackObject.external_id == external_id,
            AttackObject.hidden == false(),
        )
        if domain is not None:
            stmt = stmt.where(AttackObject.domain == domain)
        return await self.session.scalar(
            stmt.order_by(AttackObject.domain, AttackObject.modified.desc()).limit(1)
        )

    async def domains_of(self, stix_ids: Sequence[str]) -> dict[str, list[str]]:
        """The domains in which each of these objects is shown, by STIX id."""
        out: dict[str, list[str]] = {}
        for batch in _batches(sorted(set(stix_ids))):
            rows = await self.session.execute(
                select(AttackObject.stix_id, AttackObject.domain)
                .where(AttackObject.stix_id.in_(batch), AttackObject.hidden == false())
                .order_by(AttackObject.stix_id, AttackObject.domain)
            )
            for stix_id, domain in rows.all():
                out.setdefault(stix_id, []).append(domain)
        return out

    async def technique_domains(self, external_ids: Sequence[str]) -> dict[str, set[str]]:
        """The domains in which each of these technique ids names a shown technique."""
        out: dict[str, set[str]] = {}
        for batch in _batches(sorted(set(external_ids))):
            rows = await self.session.execute(
                select(AttackObject.external_id, AttackObject.domain).where(
                    AttackObject.kind == "technique",
                    AttackObject.hidden == false(),
                    AttackObject.external_id.in_(batch),
                )
            )
            for external_id, domain in rows.all():
                if external_id is not None:
                    out.setdefault(external_id, set()).add(domain)
        return out

    async def page(
        self,
        kind: str,
        *,
        after: tuple[str, str] | None,
        limit: int,
        q: str | None = None,
        tactic: str | None = None,
        platform: str | None = None,
        include_subtechniques: bool = True,
        search_aliases: bool = False,
        domain: str | None = None,
    ) -> Sequence[AttackObject]:
        """Shown objects of a kind by external id, filtered, after a (external_id, stix_id) keyset.

        Without a domain, an object shown in several domains is listed once (its first domain's copy).
        """
        stmt = select(AttackObject).where(AttackObject.kind == kind, AttackObject.hidden == false())
        if domain is not None:
            stmt = stmt.where(AttackObject.domain == domain)
        else:
            other = aliased(AttackObject)
            stmt = stmt.where(
                ~exists().where(
                    other.stix_id == AttackObject.stix_id,
                    other.hidden == false(),
                    other.domain < AttackObject.domain,
                )
            )
        if q:
            matches = [contains_ci(AttackObject.name, q), contains_ci(AttackObject.external_id, q)]
            if search_aliases:
                aliases = func.lower(cast(AttackObject.aliases, Text))
                matches.append(aliases.like(f"%{like_escape(q.lower())}%", escape="\\"))
            stmt = stmt.where(or_(*matches))
        if tactic:
            stmt = stmt.where(json_list_has(AttackObject.tactics, tactic))
        if platform:
            stmt = stmt.where(json_list_has(AttackObject.platforms, platform))
        if not include_subtechniques:
            stmt = stmt.where(AttackObject.parent_external_id.is_(None))
        if after is not None:
            external_id, stix_id = after
            stmt = stmt.where(
                or_(
                    AttackObject.external_id > external_id,
                    and_(AttackObject.external_id == external_id, AttackObject.stix_id > stix_id),
                )
            )
        rows = await self.session.scalars(
            stmt.order_by(AttackObject.external_id, AttackObject.stix_id).limit(limit)
        )
        return rows.all()

    async def subtechniques(self, parent_external_id: str, domain: str) -> Sequence[AttackObject]:
        """Shown sub-techniques of a domain's technique."""
        rows = await self.session.scalars(
            select(AttackObject)
            .where(
                AttackObject.kind == "technique",
                AttackObject.domain == domain,
                AttackObject.parent_external_id == parent_external_id,
                AttackObject.hidden == false(),
            )
            .order_by(AttackObject.external_id)
        )
        return rows.all()

    async def related(
        self,
        stix_id: str,
        relationship_type: str,
        *,
        direction: Literal["in", "out"],
        kinds: Sequence[str],
        domain: str | None = None,
    ) -> list[AttackObject]:
        """Shown objects of `kinds` linked to `stix_id` by shown relationships, by external id.

        direction "out": stix_id is the source (what a group uses); "in": it is the target (who uses it).
        Each relationship links objects of its own domain; without `domain`, every domain's count.
        """
        rel = AttackRelationship
        if direction == "out":
            joined, anchor = AttackObject.stix_id == rel.target_ref, rel.source_ref == stix_id
        else:
            joined, anchor = AttackObject.stix_id == rel.source_ref, rel.target_ref == stix_id
        stmt = select(AttackObject).join(rel, and_(joined, AttackObject.domain == rel.domain))
        if domain is not None:
            stmt = stmt.where(rel.domain == domain)
        rows = await self.session.scalars(
            stmt.where(
                anchor,
                rel.relationship_type == relationship_type,
                rel.hidden == false(),
                AttackObject.hidden == false(),
                AttackObject.kind.in_(list(kinds)),
            ).order_by(AttackObject.external_id, AttackObject.stix_id, AttackObject.domain)
        )
        # Two relationships may link the same pair (re-published with a new id, or in two domains'
        # bundles): one row each.
        out: list[AttackObject] = []
        seen: set[str] = set()
        for row in rows.all():
            if row.stix_id not in seen:
                seen.add(row.stix_id)
                out.append(row)
        return out
