"""SQL of imports: import rows, uploaded chunks, and the set-based indicator merge of PostgreSQL.

PostgreSQL: rows are COPYed into a temporary staging table, then one INSERT … SELECT … ON CONFLICT
merges them with the same rules as the indicator bulk create (tags union, sources appended, confidence
max, last_seen max, first_seen min, description kept unless empty) and writes a history row for each
merged indicator. SQLite goes through the indicator service's bulk path, a thousand rows at a time.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import delete, func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from raptorflow.kit.tenancy import TenantRepository, bind_org
from raptorflow.models import ImportChunk, ImportRun

STAGING = "raptorflow_import_staging"
STAGING_COLUMNS = (
    "type",
    "value",
    "tags",
    "confidence",
    "score",
    "tlp",
    "classification",
    "description",
    "first_seen",
    "last_seen",
)
# A time-ordered UUID (v7 layout: 48-bit milliseconds, then random bits) made by PostgreSQL 13+.
_UUID7 = (
    "encode(set_bit(set_bit(overlay(uuid_send(gen_random_uuid()) placing "
    "substring(int8send(floor(extract(epoch from clock_timestamp()) * 1000)::bigint) from 3) "
    "from 1 for 6), 52, 1), 53, 1), 'hex')::uuid"
)
_CREATE_STAGING = text(
    f"CREATE TEMPORARY TABLE IF NOT EXISTS {STAGING} (type text, value text, tags jsonb, confidence int, "
    "score int, tlp text, classification text, description text, first_seen timestamptz, "
    "last_seen timestamptz) ON COMMIT DROP"
)
# Built from constants only; every input is a bound parameter.
_MERGE_TEMPLATE = """
WITH agg AS (
  SELECT type, value, max(confidence) AS confidence, max(score) AS score, min(tlp) AS tlp,
         min(classification) AS classification, max(description) AS description,
         min(first_seen) AS first_seen, max(last_seen) AS last_seen,
         CASE WHEN count(*) = 1 THEN (array_agg(tags))[1] ELSE (
           SELECT coalesce(jsonb_agg(e ORDER BY o), '[]'::jsonb) FROM (
             SELECT x.e, min(a.n * 1000 + x.k) AS o
             FROM unnest(array_agg(coalesce(tags, CAST(:default_tags AS jsonb)))) WITH ORDINALITY AS a(j, n),
                  jsonb_array_elements(a.j) WITH ORDINALITY AS x(e, k)
             GROUP BY x.e
           ) AS d
         ) END AS tags
  FROM @STAGING@ GROUP BY type, value
), src AS (
  SELECT type, value,
         coalesce(confidence, :confidence) AS confidence,
         coalesce(score, :score) AS score,
         coalesce(tlp, :tlp) AS tlp,
         coalesce(classification, :classification) AS classification,
         coalesce(description, '') AS description,
         coalesce(first_seen, last_seen, :now) AS first_seen,
         greatest(coalesce(last_seen, :now), coalesce(first_seen, last_seen, :now)) AS last_seen,
         coalesce(tags, CAST(:default_tags AS jsonb)) AS tags
  FROM agg
), ins AS (
  INSERT INTO indicators AS i (id, org_id, type, value, project_id, classification, confidence, score, tlp,
       tags, sources, description, attack_techniques, first_seen, last_seen, false_positive,
       sightings_count, created_by, created_at, updated_at)
  SELECT @UUID7@, :org_id, type, value, :project_id, classification, confidence, score, tlp,
         tags, CAST(:sources AS jsonb), description, '[]'::jsonb, first_seen, last_seen, false, 0,
         :created_by, :now, :now
  FROM src
  ON CONFLICT (org_id, type, value) DO UPDATE SET
    tags = i.tags || (SELECT coalesce(jsonb_agg(e), '[]'::jsonb) FROM jsonb_array_elements(EXCLUDED.tags) AS e
                      WHERE NOT i.tags @> jsonb_build_array(e)),
    sources = CASE WHEN CAST(:sources AS jsonb) = '[]'::jsonb OR i.sources @> CAST(:sources AS jsonb)
                   THEN i.sources ELSE i.sources || CAST(:sources AS jsonb) END,
    confidence = CASE WHEN :confidence_given THEN greatest(i.confidence, EXCLUDED.confidence)
                      ELSE i.confidence END,
    last_seen = greatest(i.last_seen, EXCLUDED.last_seen),
    first_seen = least(i.first_seen, EXCLUDED.first_seen),
    description = CASE WHEN i.description = '' THEN EXCLUDED.description ELSE i.description END,
    updated_at = :now
  RETURNING i.id, (xmax = 0) AS created
), hist AS (
  INSERT INTO indicator_history (id, org_id, indicator_id, action, actor_user_id, actor_api_key_id, changes,
                                 created_at)
  SELECT @UUID7@, :org_id, id, 'merged', :created_by, NULL, CAST(:history AS jsonb), :now
  FROM ins WHERE NOT created
)
SELECT count(*) FILTER (WHERE created) AS created, count(*) FILTER (WHERE NOT created) AS merged FROM ins
"""
_MERGE = text(_MERGE_TEMPLATE.replace("@STAGING@", STAGING).replace("@UUID7@", _UUID7))


class ImportRepository(TenantRepository):
    """Imports of one org and their uploaded chunks."""

    model = ImportRun

    async def get(self, import_id: uuid.UUID) -> ImportRun | None:
        """One import by id."""
        return await self.session.scalar(self.scoped(select(ImportRun).where(ImportRun.id == import_id)))

    async def page(
        self, before: uuid.UUID | None, limit: int, feed_id: uuid.UUID | None
    ) -> Sequence[ImportRun]:
        """Newest first."""
        stmt = self.scoped(select(ImportRun))
        if before is not None:
            stmt = stmt.where(ImportRun.id < before)
        if feed_id is not None:
            stmt = stmt.where(ImportRun.feed_id == feed_id)
        return (await self.session.scalars(stmt.order_by(ImportRun.id.desc()).limit(limit))).all()

    async def add_chunk(self, import_id: uuid.UUID, seq: int, data: bytes) -> None:
        """Store one piece of an upload."""
        self.session.add(ImportChunk(import_id=import_id, seq=seq, org_id=self.org_id, data=data))
        await self.session.flush()

    async def chunk(self, import_id: uuid.UUID, seq: int) -> bytes | None:
        """One piece of an upload, or None past the last."""
        data = await self.session.scalar(
            select(ImportChunk.data).where(
                ImportChunk.org_id == self.org_id, ImportChunk.import_id == import_id, ImportChunk.seq == seq
            )
        )
        return bytes(data) if data is not None else None

    async def drop_chunks(self, import_id: uuid.UUID) -> None:
        """Forget an upload once its import is over."""
        await self.session.execute(
            delete(ImportChunk).where(ImportChunk.org_id == self.org_id, ImportChunk.import_id == import_id)
        )

    async def set(self, import_id: uuid.UUID, **values: Any) -> None:
        """Update fields of an import."""
        await self.session.execute(
            update(ImportRun)
            .where(ImportRun.org_id == self.org_id, ImportRun.id == import_id)
            .values(
                updated_at=func.now() if "updated_at" not in values else values.pop("updated_at"), **values
            )
        )


async def iter_chunks(factory: Any, org_id: uuid.UUID, import_id: uuid.UUID) -> AsyncIterator[bytes]:
    """The pieces of an upload in order, each read in a short transaction of its own."""
    seq = 0
    while True:
        async with factory() as session:
            await bind_org(session, org_id)
            data = await ImportRepository(session, org_id).chunk(import_id, seq)
            await session.rollback()
        if data is None:
            return
        yield data
        seq += 1


class PgStaging:
    """COPY into a temporary staging table, then one merge into indicators (same transaction)."""

    def __init__(self, session: AsyncSession, org_id: uuid.UUID) -> None:
        self.session = session
        self.org_id = org_id
        self.driver: Any = None

    async def start(self) -> None:
        """Create the staging table (dropped at commit)."""
        await self.session.execute(_CREATE_STAGING)
        await self.session.execute(text(f"TRUNCATE {STAGING}"))
        connection = await self.session.connection()
        raw = await connection.get_raw_connection()
        self.driver = raw.driver_connection

    async def clear(self) -> None:
        """Empty the staging table (after a merge, before the next part)."""
        await self.session.execute(text(f"TRUNCATE {STAGING}"))

    async def copy(self, rows: list[tuple[Any, ...]]) -> None:
        """Append rows (tuples in STAGING_COLUMNS order) with COPY."""
        if rows:
            await self.driver.copy_records_to_table(STAGING, records=rows, columns=STAGING_COLUMNS)

    async def merge(
        self,
        *,
        created_by: uuid.UUID | None,
        project_id: uuid.UUID | None,
        defaults: dict[str, Any],
        default_tags: list[str],
        source: str | None,
        confidence_given: bool,
        now: datetime,
        history: dict[str, Any],
    ) -> tuple[int, int]:
        """Merge the staged rows into indicators; returns (created, merged)."""
        result = await self.session.execute(
            _MERGE,
            {
                "org_id": self.org_id,
                "created_by": created_by,
                "project_id": project_id,
                "confidence": defaults["confidence"],
                "score": defaults["score"],
                "tlp": defaults["tlp"],
                "classification": defaults["classification"],
                "default_tags": orjson.dumps(default_tags).decode(),
                "sources": orjson.dumps([source] if source else []).decode(),
                "confidence_given": confidence_given,
                "now": now,
                "history": orjson.dumps(history).decode(),
            },
        )
        created, merged = result.one()
        return int(created), int(merged)
