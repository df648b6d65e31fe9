"""All SQL of indicators: keyed reads, set-based insert/update, filtered lists, search, stats."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import (
    ColumnElement,
    Select,
    String,
    and_,
    bindparam,
    case,
    cast,
    delete,
    exists,
    func,
    insert,
    literal,
    literal_column,
    or_,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from raptorflow.kit.db import dialect_name
from raptorflow.kit.pagination import keyset_after
from raptorflow.kit.tenancy import SelectT, TenantRepository
from raptorflow.models import AttackObject, Indicator, IndicatorHistory, Job, Organization, Project, Workspace

_UNNEST_COLUMNS = {
    "id": "uuid",
    "type": "text",
    "value": "text",
    "project_id": "uuid",
    "workspace_id": "uuid",
    "classification": "text",
    "confidence": "int",
    "score": "int",
    "tlp": "text",
    "tags": "text",
    "sources": "text",
    "description": "text",
    "attack_techniques": "text",
    "first_seen": "timestamptz",
    "last_seen": "timestamptz",
    "valid_from": "timestamptz",
    "valid_until": "timestamptz",
}
_JSON_COLUMNS = {"tags", "sources", "attack_techniques"}
# Built from the constant column table above, never from input. Run on the request's asyncpg connection
# directly (positional parameters): SQLAlchemy's parameter and row processing cost as much as the
# statement for 1,000 rows. RETURNING id: the ids of the rows inserted (the others existed).
_PG_BULK_INSERT = (
    "INSERT INTO indicators (org_id, created_by, created_at, updated_at, false_positive, sightings_count, "  # noqa: S608
    + ", ".join(_UNNEST_COLUMNS)
    + ") SELECT $1, $2, $3, $3, false, 0, "
    + ", ".join(f"u.{c}::jsonb" if c in _JSON_COLUMNS else f"u.{c}" for c in _UNNEST_COLUMNS)
    + " FROM unnest("
    + ", ".join(f"${n}::{t}[]" for n, t in enumerate(_UNNEST_COLUMNS.values(), start=4))
    + ") AS u("
    + ", ".join(_UNNEST_COLUMNS)
    + ") ON CONFLICT (org_id, type, value) DO NOTHING RETURNING id"
)
# SQLite allows 32,766 bound parameters per statement; two per (type, value) key plus slack.
SQLITE_KEY_CHUNK = 5_000
# Substring search considers at most this many matches (then sorts them): broad terms stay fast.
SEARCH_CANDIDATES = 2_000
# Searches that may also be a hash prefix (hashes are not in the trigram index: they match by prefix).
_HEX = re.compile(r"[0-9a-f]{1,128}")


def match_keys(stmt: SelectT, keys: Sequence[tuple[str, str]], *, postgres: bool) -> SelectT:
    """Restrict a SELECT on indicators to (type, value) keys: an unnest join on PostgreSQL, IN elsewhere."""
    if len(keys) == 1:
        return stmt.where(Indicator.type == keys[0][0], Indicator.value == keys[0][1])
    if postgres:
        text_array = postgresql.ARRAY(String)
        wanted = select(
            func.unnest(cast(bindparam("t", [k[0] for k in keys]), text_array)).label("t"),
            func.unnest(cast(bindparam("v", [k[1] for k in keys]), text_array)).label("v"),
        ).subquery()
        return stmt.join(wanted, and_(Indicator.type == wanted.c.t, Indicator.value == wanted.c.v))
    return stmt.where(tuple_(Indicator.type, Indicator.value).in_(keys))


class IndicatorRepository(TenantRepository):
    """Indicators of one organization."""

    model = Indicator

    @property
    def postgres(self) -> bool:
        """True on PostgreSQL."""
        return dialect_name(self.session) == "postgresql"

    async def get(self, indicator_id: uuid.UUID) -> Indicator | None:
        """One indicator by id."""
        return await self.session.scalar(self.scoped(select(Indicator).where(Indicator.id == indicator_id)))

    async def by_keys(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], Indicator]:
        """Existing indicators for (type, value) keys, in as few queries as the database allows."""
        found: dict[tuple[str, str], Indicator] = {}
        if not keys:
            return found
        chunk = len(keys) if self.postgres else SQLITE_KEY_CHUNK
        for start in range(0, len(keys), chunk):
            stmt = match_keys(select(Indicator), keys[start : start + chunk], postgres=self.postgres)
            rows = await self.session.scalars(self.scoped(stmt))
            for row in rows:
                found[(row.type, row.value)] = row
        return found

    async def insert_new(self, rows: list[dict[str, Any]]) -> set[tuple[str, str]]:
        """Insert rows in one statement; a row someone else inserted meanwhile is skipped.

        Returns the (type, value) keys actually inserted.
        """
        if not rows:
            return set()
        if self.postgres:
            return await self._insert_unnest(rows)
        stmt = (
            sqlite.insert(Indicator)
            .on_conflict_do_nothing(index_elements=["org_id", "type", "value"])
            .returning(Indicator.type, Indicator.value)
        )
        result = await self.session.execute(stmt, rows)
        return {(t, v) for t, v in result.all()}

    async def _insert_unnest(self, rows: list[dict[str, Any]]) -> set[tuple[str, str]]:
        # One INSERT … SELECT FROM unnest(arrays): a single round trip whatever the batch size.
        columns = {name: [r[name] for r in rows] for name in _UNNEST_COLUMNS}
        for name in ("tags", "sources", "attack_techniques"):
            columns[name] = [orjson.dumps(v).decode() for v in columns[name]]
        first = rows[0]
        driver = (await (await self.session.connection()).get_raw_connection()).driver_connection
        assert driver is not None
        inserted = await driver.fetch(
            _PG_BULK_INSERT, self.org_id, first["created_by"], first["created_at"], *columns.values()
        )
        ids = {r[0] for r in inserted}
        return {(r["type"], r["value"]) for r in rows if r["id"] in ids}

    async def update_rows(self, rows: list[dict[str, Any]]) -> None:
        """Update many indicators by primary key in one executemany round."""
        if rows:
            await self.session.execute(update(Indicator), rows)

    async def add_history(self, rows: list[dict[str, Any]]) -> None:
        """Append history rows."""
        if rows:
            await self.session.execute(insert(IndicatorHistory), rows)

    async def history(
        self, indicator_id: uuid.UUID, limit: int, before: uuid.UUID | None
    ) -> Sequence[IndicatorHistory]:
        """Changes of one indicator, newest first."""
        stmt = select(IndicatorHistory).where(
            IndicatorHistory.org_id == self.org_id, IndicatorHistory.indicator_id == indicator_id
        )
        if before is not None:
            stmt = stmt.where(IndicatorHistory.id < before)
        return (await self.session.scalars(stmt.order_by(IndicatorHistory.id.desc()).limit(limit))).all()

    async def existing_ids(
        self, model: type[Project] | type[Workspace], ids: Iterable[uuid.UUID]
    ) -> set[uuid.UUID]:
        """Which of these project or workspace ids belong to this org."""
        wanted = set(ids)
        if not wanted:
            return set()
        rows = await self.session.scalars(
            select(model.id).where(model.org_id == self.org_id, model.id.in_(wanted))
        )
        return set(rows.all())

    async def known_techniques(self, ids: Iterable[str]) -> set[str] | None:
        """The ids among these that the ATT&CK catalog knows; None when no catalog is loaded."""
        wanted = set(ids)
        loaded = await self.session.scalar(
            select(AttackObject.stix_id).where(AttackObject.kind == "technique").limit(1)
        )
        if loaded is None:
            return None
        if not wanted:
            return set()
        rows = await self.session.scalars(
            select(AttackObject.external_id).where(
                AttackObject.kind == "technique",
                AttackObject.hidden.is_(False),
                AttackObject.external_id.in_(wanted),
            )
        )
        return {r for r in rows.all() if r}

    async def half_lives(self) -> dict[str, Any]:
        """The org's score half-life overrides."""
        settings = await self.session.scalar(
            select(Organization.settings).where(Organization.id == self.org_id)
        )
        value = (settings or {}).get("half_life_days")
        return value if isinstance(value, dict) else {}

    async def set_half_lives(self, overrides: dict[str, float | None]) -> None:
        """Store the org's half-life overrides."""
        org = await self.session.get(Organization, self.org_id)
        assert org is not None
        org.settings = {**(org.settings or {}), "half_life_days": overrides}
        await self.session.flush()

    def json_contains(self, column: Any, item: str) -> ColumnElement[bool]:
        """`item` is an element of a JSON list column."""
        if self.postgres:
            contains: ColumnElement[bool] = column.op("@>")(
                cast(func.jsonb_build_array(item), postgresql.JSONB)
            )
            return contains
        each = func.json_each(column).table_valued("value")
        return exists(select(literal_column("1")).select_from(each).where(each.c.value == item))

    def filtered(self, f: dict[str, Any], now: datetime) -> Select[Indicator]:
        """SELECT of this org's indicators matching the list filters."""
        stmt = self.scoped(select(Indicator))
        simple = {
            "type": Indicator.type,
            "classification": Indicator.classification,
            "project_id": Indicator.project_id,
            "workspace_id": Indicator.workspace_id,
            "tlp": Indicator.tlp,
            "false_positive": Indicator.false_positive,
        }
        for key, column in simple.items():
            if f.get(key) is not None:
                stmt = stmt.where(column == f[key])
        if f.get("ids"):
            stmt = stmt.where(Indicator.id.in_(f["ids"]))
        if f.get("tag") is not None:
            stmt = stmt.where(self.json_contains(Indicator.tags, f["tag"]))
        if f.get("source") is not None:
            stmt = stmt.where(self.json_contains(Indicator.sources, f["source"]))
        if f.get("min_score") is not None:
            stmt = stmt.where(Indicator.score >= f["min_score"])
        if f.get("max_score") is not None:
            stmt = stmt.where(Indicator.score <= f["max_score"])
        ranges: tuple[tuple[str, Any, str], ...] = (
            ("first_seen_after", Indicator.first_seen, ">="),
            ("first_seen_before", Indicator.first_seen, "<"),
            ("last_seen_after", Indicator.last_seen, ">="),
            ("last_seen_before", Indicator.last_seen, "<"),
        )
        for key, column, op in ranges:
            if f.get(key) is not None:
                stmt = stmt.where(column >= f[key] if op == ">=" else column < f[key])
        archived = f.get("archived")
        if archived is not None:
            stmt = stmt.where(
                Indicator.archived_at.is_not(None) if archived else Indicator.archived_at.is_(None)
            )
        expired = f.get("expired")
        if expired is not None:
            is_expired = and_(Indicator.valid_until.is_not(None), Indicator.valid_until <= now)
            stmt = stmt.where(is_expired if expired else ~is_expired)
        return stmt

    async def page(self, stmt: Select[Indicator], limit: int) -> Sequence[Indicator]:
        """Run a list query with its limit."""
        return list((await self.session.scalars(stmt.limit(limit))).all())

    def search(
        self, q: str, *, limit: int | None = None, after: list[Any] | None = None
    ) -> Select[Indicator]:
        """Indicators whose value, description or tags contain `q` (case-insensitive).

        On PostgreSQL `limit` and `after` (the (created_at, id) key of the previous page's last row)
        narrow the index search's candidates to the page, newest first, before any row is read: a
        broad term reads `limit` rows, not its up to SEARCH_CANDIDATES matches.
        """
        needle = q.lower()
        if self.postgres:
            pattern = "%" + needle.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            # The indexes are reached through a security-definer function (RLS would force a sequential
            # scan); it returns at most SEARCH_CANDIDATES matches of the bound org from the trigram index
            # (values other than hashes, descriptions, tags) and as many hashes starting with `needle`
            # when it is hexadecimal (migration 20261201_1320_intel_write_path).
            hash_prefix = needle if _HEX.fullmatch(needle) else None
            found = func.raptorflow_search_indicators(
                pattern, literal(hash_prefix, String()), SEARCH_CANDIDATES
            ).table_valued("id", "created_at")
            wanted = select(found.c.id)
            if after is not None:
                wanted = wanted.where(keyset_after([(found.c.created_at, True), (found.c.id, True)], after))
            if limit is not None:
                wanted = wanted.order_by(found.c.created_at.desc(), found.c.id.desc()).limit(limit)
            return self.scoped(select(Indicator)).where(Indicator.id.in_(wanted))
        if len(needle) >= 3:
            phrase = '"' + needle.replace('"', '""') + '"'
            hits: Select[Any] = (
                select(literal_column("rowid"))
                .select_from(text("indicators_fts"))
                .where(text("indicators_fts MATCH :phrase").bindparams(phrase=phrase))
            )
            return self.scoped(select(Indicator)).where(literal_column("indicators.rowid").in_(hits))
        pattern = "%" + needle.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        body = func.lower(Indicator.value + " " + Indicator.description + " " + cast(Indicator.tags, String))
        return self.scoped(select(Indicator)).where(body.like(pattern, escape="\\"))

    async def delete(self, indicator: Indicator) -> None:
        """Delete one indicator (its history and sightings cascade)."""
        await self.session.execute(
            delete(Indicator).where(Indicator.id == indicator.id, Indicator.org_id == self.org_id)
        )

    async def bulk_set(self, ids_stmt: Select[Indicator], values: dict[str, Any]) -> int:
        """Set plain columns on every indicator the statement selects; returns how many."""
        ids = select(ids_stmt.with_only_columns(Indicator.id).subquery().c.id)
        result = await self.session.execute(
            update(Indicator)
            .where(Indicator.org_id == self.org_id, Indicator.id.in_(ids))
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        return int(result.rowcount or 0)  # type: ignore[attr-defined]

    async def matching(self, stmt: Select[Indicator], limit: int) -> Sequence[Indicator]:
        """Rows a bulk update touches (bounded)."""
        return list((await self.session.scalars(stmt.limit(limit))).all())

    async def stats(self, since: datetime) -> dict[str, Any]:
        """Counts by type, classification, TLP and score band; additions per day since `since`."""
        live = and_(Indicator.org_id == self.org_id, Indicator.archived_at.is_(None))
        out: dict[str, Any] = {}
        for name, column in (
            ("by_type", Indicator.type),
            ("by_classification", Indicator.classification),
            ("by_tlp", Indicator.tlp),
        ):
            rows = await self.session.execute(select(column, func.count()).where(live).group_by(column))
            out[name] = {k: int(n) for k, n in rows.all()}
        band = case(
            (Indicator.score >= 75, "75-100"),
            (Indicator.score >= 50, "50-74"),
            (Indicator.score >= 25, "25-49"),
            else_="0-24",
        )
        rows = await self.session.execute(select(band, func.count()).where(live).group_by(band))
        out["by_score_band"] = {k: int(n) for k, n in rows.all()}
        day = (
            func.date(Indicator.created_at)
            if not self.postgres
            else func.date_trunc("day", Indicator.created_at)
        )
        rows = await self.session.execute(
            select(day, func.count()).where(live, Indicator.created_at >= since).group_by(day).order_by(day)
        )
        out["added_per_day"] = [
            {"day": (d.date().isoformat() if isinstance(d, datetime) else str(d)), "count": int(n)}
            for d, n in rows.all()
        ]
        out["total"] = sum(out["by_type"].values())
        return out


def _expiry_due(now: datetime) -> tuple[Any, ...]:
    """Indicators past valid_until whose expiry is not recorded (index ix_indicators_expiry_due)."""
    return (Indicator.expired_at.is_(None), Indicator.valid_until.is_not(None), Indicator.valid_until <= now)


def _first_of_org(order: Any, *conditions: Any) -> Any:
    """True when the org of the outer query has an indicator matching `conditions`.

    The first entry of an index range (ORDER BY the indexed column, LIMIT 1): EXISTS alone let the
    planner pick a sequential scan of a million-row org (measured).
    """
    first = (
        select(Indicator.id)
        .where(Indicator.org_id == Organization.id, *conditions)
        .order_by(order)
        .limit(1)
        .correlate(Organization)
        .scalar_subquery()
    )
    return first.is_not(None)


class MaintenanceRepository:
    """Expiry bookkeeping of indicators (`expired_at`): which orgs have some to do, and doing it."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def orgs_due(self, now: datetime, task_kind: str) -> list[uuid.UUID]:
        """Live orgs with expiries to record or to undo and no `task_kind` job queued or running
        (cross-tenant: run inside `cross_tenant`)."""
        pending = select(Job.org_id).where(Job.status.in_(("queued", "running")), Job.kind == task_kind)
        due = _first_of_org(Indicator.valid_until.asc(), *_expiry_due(now))
        extended = _first_of_org(
            Indicator.valid_until.desc(), Indicator.expired_at.is_not(None), Indicator.valid_until > now
        )
        cleared = _first_of_org(
            Indicator.valid_until.asc(), Indicator.expired_at.is_not(None), Indicator.valid_until.is_(None)
        )
        rows = await self.session.scalars(
            select(Organization.id).where(
                Organization.deleted_at.is_(None),
                Organization.id.not_in(pending),
                or_(due, extended, cleared),
            )
        )
        return list(rows.all())

    async def record_expired(self, org_id: uuid.UUID, now: datetime, limit: int) -> Sequence[Any]:
        """Mark up to `limit` newly expired indicators of the org; their (id, type, value, score,
        valid_until). The state predicate is repeated on the row: a concurrent run records nothing twice."""
        batch = (
            select(Indicator.id)
            .where(Indicator.org_id == org_id, *_expiry_due(now))
            .order_by(Indicator.valid_until)
            .limit(limit)
            .scalar_subquery()
        )
        result = await self.session.execute(
            update(Indicator)
            .where(Indicator.org_id == org_id, Indicator.id.in_(batch), *_expiry_due(now))
            .values(expired_at=Indicator.valid_until)
            .returning(Indicator.id, Indicator.type, Indicator.value, Indicator.score, Indicator.valid_until)
            .execution_options(synchronize_session=False)
        )
        return result.all()

    async def clear_extended(self, org_id: uuid.UUID, now: datetime) -> int:
        """Un-record expiries whose validity was extended or cleared (ix_indicators_expired); how many."""
        result = await self.session.execute(
            update(Indicator)
            .where(
                Indicator.org_id == org_id,
                Indicator.expired_at.is_not(None),
                or_(Indicator.valid_until.is_(None), Indicator.valid_until > now),
            )
            .values(expired_at=None)
            .execution_options(synchronize_session=False)
        )
        return int(result.rowcount or 0)  # type: ignore[attr-defined]
