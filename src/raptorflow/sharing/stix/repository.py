"""All SQL of STIX sharing: streaming indicator columns, context rows by id, stored STIX objects."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncGenerator, Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import anyio
import orjson
from sqlalchemy import Select, Text, TextClause, and_, cast, or_, select, text, update
from sqlalchemy.dialects import postgresql, sqlite

from raptorflow.kit.db import CLOSE_TIMEOUT_S, dialect_name
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
from raptorflow.sharing.stix import render
from raptorflow.sharing.stix.patterns import PATHS

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
RAW_BATCH = 5_000


def _lit(value: str) -> str:
    """A SQL string literal of a constant (standard_conforming_strings: only quotes are doubled)."""
    return "'" + value.replace("'", "''") + "'"


def _ts_sql(column: str) -> str:
    """render.ts in SQL: RFC 3339 UTC, milliseconds truncated (to_char's MS truncates as ts does)."""
    return f"""to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')"""


def _indicator_sql() -> tuple[str, str]:
    """(STIX id, whole JSON text) of render.indicator as PostgreSQL expressions on `indicators`.

    PostgreSQL builds the bytes of the export hot path (no per-object Python dict); the expressions
    mirror render.indicator and patterns.build, and a test compares both renderings object by object.
    """
    i = "indicators."
    ref = (
        f"CASE WHEN {i}stix_id <> '' AND right({i}stix_id, 36) <> {i}id::text THEN {i}stix_id "
        f"ELSE 'indicator--' || overlay({i}id::text placing '4' from 15 for 1) END"
    )
    # patterns.quote: backslash and single quote escaped, in single quotes.
    quoted = r"'''' || replace(replace(@V, '\', '\\'), '''', '\''') || ''''".replace("@V", i + "value")
    asn = f"ltrim(split_part(upper({i}value), '.', 1), 'AS')"
    prefixes = [
        f"WHEN 'cidr' THEN CASE WHEN strpos({i}value, ':') > 0 THEN '[ipv6-addr:value = ' "
        "ELSE '[ipv4-addr:value = ' END"
    ]
    for kind, (object_type, path) in PATHS.items():
        if kind != "asn":
            prefixes.append(f"WHEN {_lit(kind)} THEN {_lit(f'[{object_type}:{path} = ')}")
    pattern = (
        f"CASE {i}type WHEN 'stix-pattern' THEN {i}value "
        f"WHEN 'asn' THEN '[autonomous-system:number = ' || "
        f"CASE WHEN {asn} ~ '^[0-9]+$' THEN ({asn})::numeric::text ELSE '0' END || ']' "
        f"ELSE CASE {i}type {' '.join(prefixes)} END || {quoted} || ']' END"
    )
    kinds = " ".join(
        f"WHEN {_lit(k)} THEN {_lit(chr(34) + v + chr(34))}" for k, v in render.INDICATOR_TYPES.items()
    )
    marks = " ".join(f"WHEN {_lit(k)} THEN {_lit(chr(34) + v + chr(34))}" for k, v in render.TLP2_IDS.items())
    start = f"coalesce({i}valid_from, {i}first_seen)"
    fragment = " || ".join(
        [
            """'{"type":"indicator","spec_version":"2.1","id":"'""",
            f"({ref})",
            """'","created_by_ref":"'""",
            ":creator",
            """'","created":"'""",
            _ts_sql(i + "created_at"),
            """'","modified":"'""",
            _ts_sql(i + "updated_at"),
            """'","name":'""",
            f"to_json(CASE WHEN length({i}value) <= 250 THEN {i}value "
            f"ELSE left({i}value, 247) || '...' END)::text",
            """',"indicator_types":['""",
            f"""CASE {i}classification {kinds} ELSE '"unknown"' END""",
            """'],"pattern":'""",
            f"to_json({pattern})::text",
            """',"pattern_type":"stix","pattern_version":"2.1","valid_from":"'""",
            _ts_sql(start),
            """'","confidence":'""",
            f"{i}confidence::text",
            """',"object_marking_refs":['""",
            f"CASE {i}tlp {marks} END",
            "']'",
            f"""CASE WHEN {i}description <> '' THEN ',"description":' || to_json({i}description)::text """
            "ELSE '' END",
            f"""CASE WHEN {i}valid_until > {start} THEN ',"valid_until":"' || {_ts_sql(i + "valid_until")} """
            """|| '"' ELSE '' END""",
            f"""CASE WHEN {i}tags <> '[]'::jsonb THEN ',"labels":' || {i}tags::text ELSE '' END""",
            "'}'",
        ]
    )
    return ref, fragment


_REF_SQL, _FRAGMENT_SQL = _indicator_sql()


def indicator_fragment(creator: str) -> TextClause:
    """The STIX JSON text of an indicator row, built by PostgreSQL (a column of an indicators SELECT)."""
    return text(_FRAGMENT_SQL).bindparams(creator=creator)


def indicator_ref() -> TextClause:
    """The STIX id of an indicator row, built by PostgreSQL (render.object_id)."""
    return text(_REF_SQL)


@dataclass
class CopiedIndicators:
    """Complete STIX indicators, comma-separated, and what the bundle's tail needs to know of them."""

    data: bytes
    count: int
    edges: list[tuple[str, str]]  # (STIX id, techniques JSON) of indicators with ATT&CK techniques


def _copied(rows: bytes) -> CopiedIndicators:
    """COPY text rows (fragment, ref, techniques; see copy_indicator_json) as CopiedIndicators."""
    count = rows.count(b"\n")
    rows = bytes(rows).replace(b"\t\\N\t\\N\n", b",")
    edges = []
    if b"\t" in rows:
        lines = rows.split(b"\n")
        for at, line in enumerate(lines):
            if b"\t" in line:
                fragment, ref, techniques = line.split(b"\t")
                lines[at] = fragment
                edges.append((_unescape(ref).decode(), _unescape(techniques).decode()))
        rows = b",".join(lines)
    return CopiedIndicators(_unescape(rows[:-1]), count, edges)


def _unescape(field: bytes) -> bytes:
    return field.replace(b"\\\\", b"\\")


STORE_BATCH = 10_000
_UPSERT_STORED = text(
    """
INSERT INTO stix_objects AS s (id, org_id, stix_id, type, modified, object, native_kind, native_id,
                               collection_id, created_at, updated_at)
SELECT u.id, :org_id, u.stix_id, u.type, u.modified, CAST(u.object AS jsonb), u.native_kind, u.native_id,
       u.collection_id, u.created_at, u.updated_at
FROM unnest(CAST(:ids AS uuid[]), CAST(:stix_ids AS text[]), CAST(:types AS text[]),
            CAST(:modified AS timestamptz[]), CAST(:objects AS text[]), CAST(:native_kinds AS text[]),
            CAST(:native_ids AS uuid[]), CAST(:collection_ids AS uuid[]), CAST(:created AS timestamptz[]),
            CAST(:updated AS timestamptz[]))
     AS u(id, stix_id, type, modified, object, native_kind, native_id, collection_id, created_at, updated_at)
ON CONFLICT (org_id, stix_id) DO UPDATE SET
  type = EXCLUDED.type, modified = EXCLUDED.modified, object = EXCLUDED.object,
  native_kind = EXCLUDED.native_kind, native_id = EXCLUDED.native_id,
  collection_id = EXCLUDED.collection_id, updated_at = EXCLUDED.updated_at
"""
)
_SET_STIX_IDS = text(
    """
UPDATE indicators AS i SET stix_id = u.stix_id
FROM unnest(CAST(:ids AS uuid[]), CAST(:stix_ids AS text[])) AS u(id, stix_id)
WHERE i.org_id = :org_id AND i.id = u.id AND i.stix_id IS NULL
"""
)


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

    async def stream_indicators(self, stmt: Select[Any]) -> AsyncGenerator[Sequence[Any], None]:
        """Batches of INDICATOR_COLUMNS tuples for an indicator SELECT (streamed, bounded memory)."""
        stmt = stmt.with_only_columns(*INDICATOR_COLUMNS).order_by(Indicator.id)
        conn = await self.session.connection()
        result = await conn.stream(stmt.execution_options(yield_per=STREAM_BATCH))
        async for batch in result.partitions(STREAM_BATCH):
            yield batch

    async def stream_indicator_json(
        self, stmt: Select[Any], creator: str, with_ids: bool
    ) -> AsyncGenerator[Sequence[Any], None]:
        """Batches of (STIX JSON text, tlp, techniques JSON or None, STIX id or None[, native id]) rows.

        PostgreSQL only. The STIX id comes for every row `with_ids`, else only for rows with techniques.
        """
        has_techniques = "indicators.attack_techniques <> '[]'::jsonb"
        columns: list[Any] = [
            indicator_fragment(creator),
            _T.tlp,
            text(f"CASE WHEN {has_techniques} THEN indicators.attack_techniques::text END"),
        ]
        if with_ids:
            columns += [indicator_ref(), _T.id]
        else:
            columns.append(text(f"CASE WHEN {has_techniques} THEN {_REF_SQL} END"))
        stmt = stmt.with_only_columns(*columns).order_by(Indicator.id)
        conn = await self.session.connection()
        result = await conn.stream(stmt.execution_options(yield_per=RAW_BATCH))
        async for batch in result.partitions(RAW_BATCH):
            yield batch

    async def copy_indicator_json(
        self, stmt: Select[Any], creator: str
    ) -> AsyncGenerator[CopiedIndicators, None]:
        """Pieces of the STIX JSON of an indicator SELECT, rendered by PostgreSQL (PostgreSQL only).

        `COPY (SELECT …) TO STDOUT` streams the objects PostgreSQL renders while this process forwards
        the previous piece: no row objects at all. In the text format the JSON (which has no raw control
        characters: to_json and jsonb escape them) comes with its backslashes doubled and nothing else
        escaped, so a tab can only be the column separator: rows with ATT&CK techniques carry their STIX
        id and techniques in two more columns, the others `\\N` twice.
        """
        has_techniques = "indicators.attack_techniques <> '[]'::jsonb"
        query: Select[Any] = stmt.with_only_columns(
            indicator_fragment(creator),
            text(f"CASE WHEN {has_techniques} THEN {_REF_SQL} END"),
            text(f"CASE WHEN {has_techniques} THEN indicators.attack_techniques::text END"),
        ).order_by(Indicator.id)
        sql, args = self._compiled(query)
        driver = await self._driver()
        queue: asyncio.Queue[bytes | BaseException | None] = asyncio.Queue(maxsize=8)

        async def sink(data: bytes) -> None:
            await queue.put(data)

        async def run() -> None:
            try:
                await driver.copy_from_query(sql, *args, output=sink)
                await queue.put(None)
            except BaseException as exc:  # handed to the reader, which raises it
                await queue.put(exc)

        task = asyncio.create_task(run())
        rest = b""
        try:
            while (data := await queue.get()) is not None:
                if isinstance(data, BaseException):
                    raise data
                end = data.rfind(b"\n") + 1
                if rest or end != len(data):
                    data, rest = rest + data[:end], data[end:]
                if data:
                    yield _copied(data)
            if rest:
                yield _copied(rest + b"\n")
        finally:
            if not task.done():
                # Closed early, often because this task is cancelled (a client that left): shielded.
                # A COPY cut short leaves asyncpg mid-protocol (the next statement on the connection
                # fails, the session's rollback included; data still arriving trips its reader), so
                # the connection is closed at once and dropped: the pool opens a fresh one when needed.
                # Not cancelled: asyncpg would wait for the COPY's cancellation on the closed
                # connection. The COPY fails on its own once the connection is closed; emptying the
                # queue lets its last put (data or the error) through.
                with anyio.move_on_after(CLOSE_TIMEOUT_S, shield=True):
                    driver.terminate()
                    while not task.done():
                        while not queue.empty():
                            queue.get_nowait()
                        await asyncio.wait({task}, timeout=0.05)
                    await (await self.session.connection()).invalidate()
                if not task.done():
                    task.cancel()

    def _compiled(self, stmt: Select[Any]) -> tuple[str, list[Any]]:
        """A SELECT as PostgreSQL text with $n parameters and their (driver-ready) values."""
        compiled = stmt.compile(
            dialect=self.session.get_bind().dialect, compile_kwargs={"render_postcompile": True}
        )
        params = compiled.construct_params()
        processors = getattr(compiled, "_bind_processors", {})
        args = []
        for name in compiled.positiontup or ():
            value = params[name]
            processor = processors.get(name)
            args.append(processor(value) if processor is not None else value)
        return str(compiled), args

    async def _driver(self) -> Any:
        connection = await self.session.connection()
        raw = await connection.get_raw_connection()
        return raw.driver_connection

    async def indicator_refs(self, ids: Collection[uuid.UUID]) -> dict[uuid.UUID, str]:
        """STIX ids of indicators by native id."""
        out: dict[uuid.UUID, str] = {}
        wanted = list(ids)
        for start in range(0, len(wanted), CHUNK):
            stmt = select(Indicator.id, Indicator.stix_id).where(
                Indicator.org_id == self.org_id, Indicator.id.in_(wanted[start : start + CHUNK])
            )
            for native, stored in (await self.session.execute(stmt)).all():
                out[native] = render.object_id("indicator", native, stored)
        return out

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
        if self.postgres:
            # One statement over arrays (orjson for the JSON): an executemany of upserts is 10x slower.
            for start in range(0, len(rows), STORE_BATCH):
                part = rows[start : start + STORE_BATCH]
                await self.session.execute(
                    _UPSERT_STORED,
                    {
                        "ids": [r["id"] for r in part],
                        "org_id": self.org_id,
                        "stix_ids": [r["stix_id"] for r in part],
                        "types": [r["type"] for r in part],
                        "modified": [r["modified"] for r in part],
                        "objects": [orjson.dumps(r["object"]).decode() for r in part],
                        "native_kinds": [r["native_kind"] for r in part],
                        "native_ids": [r["native_id"] for r in part],
                        "collection_ids": [r["collection_id"] for r in part],
                        "created": [r["created_at"] for r in part],
                        "updated": [r["updated_at"] for r in part],
                    },
                )
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
        if self.postgres:
            await self.session.execute(
                _SET_STIX_IDS,
                {"org_id": self.org_id, "ids": list(pairs), "stix_ids": list(pairs.values())},
            )
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
