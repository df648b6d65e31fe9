"""SQL of the set-based STIX indicator import (PostgreSQL): a staging table and one merge.

Indicators are COPYed into a temporary table while the bundle is read; the check against stored copies,
the merge into `indicators` (same rules as the indicator bulk path, history and STIX ids included) and
the upsert of the objects into `stix_objects` are then one statement each over the whole import.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import TextClause, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from raptorflow.models import StixObject

CHUNK = 5_000


STAGING = "raptorflow_stix_staging"
STAGING_COLUMNS = (
    "ord",
    "stix_id",
    "modified",
    "type",
    "value",
    "classification",
    "confidence",
    "tlp",
    "marks",
    "tags",
    "description",
    "valid_from",
    "valid_until",
    "first_seen",
    "object",
)
# One row per merged (type, value): the indicator it became and what the merge did to it.
KEYS = "raptorflow_stix_keys"
# A time-ordered UUID (v7 layout: 48-bit milliseconds, then random bits) made by PostgreSQL 13+.
_UUID7 = (
    "encode(set_bit(set_bit(overlay(uuid_send(gen_random_uuid()) placing "
    "substring(int8send(floor(extract(epoch from clock_timestamp()) * 1000)::bigint) from 3) "
    "from 1 for 6), 52, 1), 53, 1), 'hex')::uuid"
)
# Python's datetime.isoformat() of a UTC timestamp (history diffs read the same as the bulk path's).
_ISO = (
    "regexp_replace(to_char(%s AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US'), '\\.000000$', '')"
    " || '+00:00'"
)


def _changed(field: str, old: str, new: str) -> str:
    return f"'{field}', CASE WHEN {new} <> {old} THEN jsonb_build_array({old}, {new}) END"


_DIFF = ",\n    ".join(
    [
        _changed("tags", "m.tags", "m.n_tags"),
        _changed("sources", "m.sources", "m.n_sources"),
        _changed("confidence", "m.confidence", "m.n_confidence"),
        _changed("last_seen", _ISO % "m.last_seen", _ISO % "m.n_last_seen"),
        _changed("first_seen", _ISO % "m.first_seen", _ISO % "m.n_first_seen"),
        _changed("description", "m.description", "m.n_description"),
    ]
)


_LIVE = "s.type IS NOT NULL AND s.state IS DISTINCT FROM 'unchanged'"


def _sql(template: str) -> TextClause:
    """A statement from a template naming the staging tables and fragments (constants, never input)."""
    for name, value in (
        ("@STAGING@", STAGING),
        ("@KEYS@", KEYS),
        ("@LIVE@", _LIVE),
        ("@UUID7@", _UUID7),
        ("@DIFF@", _DIFF),
    ):
        template = template.replace(name, value)
    return text(template)


# `object` is jsonb so that PostgreSQL parses it during the COPY (which overlaps reading the bundle);
# `state`: what the stored copy says ('unchanged' / 'updated').
_CREATE_STAGING = _sql(
    "CREATE TEMPORARY TABLE IF NOT EXISTS @STAGING@ (ord int, stix_id text, modified timestamptz, "
    "type text, value text, classification text, confidence int, tlp text, marks text, tags jsonb, "
    "description text, valid_from timestamptz, valid_until timestamptz, first_seen timestamptz, "
    "object jsonb, state text) ON COMMIT DROP"
)
_CREATE_KEYS = _sql(
    "CREATE TEMPORARY TABLE IF NOT EXISTS @KEYS@ (type text, value text, id uuid, first_ord int, "
    "created boolean, outcome text, score int) ON COMMIT DROP"
)
# Stored copies found one unique-index probe each (stix_objects statistics lag big imports).
_STORED_STATE = _sql(
    """
WITH found AS MATERIALIZED (
  SELECT t.ord, o.modified, o.native_kind, o.native_id
  FROM @STAGING@ AS t CROSS JOIN LATERAL (
    SELECT x.modified, x.native_kind, x.native_id FROM stix_objects AS x
    WHERE x.org_id = :org_id AND x.stix_id = t.stix_id
  ) AS o
)
UPDATE @STAGING@ AS s
SET state = CASE WHEN f.modified IS NOT NULL AND s.modified IS NOT NULL AND s.modified <= f.modified
                 THEN 'unchanged' ELSE 'updated' END
FROM found AS f
WHERE s.ord = f.ord
RETURNING s.ord, s.state, f.native_kind, f.native_id
"""
)
# Built from constants only; every input is a bound parameter. Rules of IndicatorService.bulk: a value
# repeated in the import folds into its first copy (tags union, confidence max); an existing indicator
# gets tags union, sources appended, confidence max, last_seen now, first_seen min, description kept
# unless empty, and a history row with the changes; the STIX id of the first copy is kept on indicators
# that have none. Rows inserted by someone else meanwhile merge as `merged`, without history. Existing
# rows are found one unique-index probe each (LATERAL): right after a big import the statistics still
# say the org is small, and a hash join would read all of its indicators.
_MERGE_SQL = """
WITH firsts AS MATERIALIZED (
  SELECT DISTINCT ON (s.type, s.value) s.type, s.value, s.ord, s.stix_id, s.classification, s.confidence,
         s.tlp, s.tags, s.description, s.valid_from, s.valid_until, s.first_seen
  FROM @STAGING@ AS s WHERE @LIVE@ ORDER BY s.type, s.value, s.ord
), folded AS (
  SELECT s.type, s.value, max(s.confidence) AS confidence, (
           SELECT coalesce(jsonb_agg(d.e ORDER BY d.o), '[]'::jsonb) FROM (
             SELECT x.e, min(a.n * 1000 + x.k) AS o
             FROM unnest(array_agg(s.tags ORDER BY s.ord)) WITH ORDINALITY AS a(j, n),
                  jsonb_array_elements(a.j) WITH ORDINALITY AS x(e, k)
             GROUP BY x.e
           ) AS d
         ) AS tags
  FROM @STAGING@ AS s WHERE @LIVE@ GROUP BY s.type, s.value HAVING count(*) > 1
), src AS MATERIALIZED (
  SELECT f.type, f.value, f.ord, f.stix_id, f.classification, f.tlp, f.description, f.valid_from,
         f.valid_until, f.first_seen, coalesce(d.confidence, f.confidence) AS confidence,
         coalesce(d.tags, f.tags) AS tags
  FROM firsts AS f LEFT JOIN folded AS d ON d.type = f.type AND d.value = f.value
), old AS MATERIALIZED (
  SELECT i.id, i.type, i.value, i.score, i.tags, i.sources, i.confidence, i.first_seen, i.last_seen,
         i.description, s.ord, s.stix_id AS s_stix_id, s.tags AS s_tags, s.confidence AS s_confidence,
         s.first_seen AS s_first_seen, s.description AS s_description
  FROM src AS s CROSS JOIN LATERAL (
    SELECT * FROM indicators AS x WHERE x.org_id = :org_id AND x.type = s.type AND x.value = s.value
    FOR UPDATE
  ) AS i
), merged AS MATERIALIZED (
  SELECT o.*,
    o.tags || coalesce((SELECT jsonb_agg(x.e ORDER BY x.k)
                        FROM jsonb_array_elements(o.s_tags) WITH ORDINALITY AS x(e, k)
                        WHERE NOT o.tags @> jsonb_build_array(x.e)), '[]'::jsonb) AS n_tags,
    CASE WHEN CAST(:sources AS jsonb) = '[]'::jsonb OR o.sources @> CAST(:sources AS jsonb) THEN o.sources
         ELSE o.sources || CAST(:sources AS jsonb) END AS n_sources,
    greatest(o.confidence, o.s_confidence) AS n_confidence,
    greatest(o.last_seen, CAST(:now AS timestamptz)) AS n_last_seen,
    least(o.first_seen, o.s_first_seen) AS n_first_seen,
    CASE WHEN o.description = '' AND coalesce(o.s_description, '') <> '' THEN o.s_description
         ELSE o.description END AS n_description
  FROM old AS o
), diffs AS MATERIALIZED (
  SELECT m.*, jsonb_strip_nulls(jsonb_build_object(
    @DIFF@
  )) AS changes
  FROM merged AS m
), upd AS (
  UPDATE indicators AS i SET tags = d.n_tags, sources = d.n_sources, confidence = d.n_confidence,
    last_seen = d.n_last_seen, first_seen = d.n_first_seen, description = d.n_description,
    updated_at = CASE WHEN d.changes <> '{}'::jsonb THEN CAST(:now AS timestamptz) ELSE i.updated_at END,
    stix_id = coalesce(i.stix_id, d.s_stix_id)
  FROM diffs AS d
  WHERE i.org_id = :org_id AND i.id = d.id AND (d.changes <> '{}'::jsonb OR i.stix_id IS NULL)
), hist AS (
  INSERT INTO indicator_history (id, org_id, indicator_id, action, actor_user_id, actor_api_key_id, changes,
                                 created_at)
  SELECT @UUID7@, :org_id, d.id, 'merged', :actor_user_id, :actor_api_key_id, d.changes, :now
  FROM diffs AS d WHERE d.changes <> '{}'::jsonb
), ins AS (
  INSERT INTO indicators AS i (id, org_id, type, value, project_id, classification, confidence, score, tlp,
       tags, sources, description, attack_techniques, first_seen, last_seen, valid_from, valid_until,
       false_positive, sightings_count, stix_id, created_by, created_at, updated_at)
  SELECT @UUID7@, :org_id, s.type, s.value, :project_id, s.classification, coalesce(s.confidence, 50), 50,
         s.tlp, s.tags, CAST(:sources AS jsonb), coalesce(s.description, ''), '[]'::jsonb,
         coalesce(s.first_seen, :now), greatest(s.first_seen, CAST(:now AS timestamptz)), s.valid_from,
         s.valid_until, false, 0,
         s.stix_id, :created_by, :now, :now
  FROM src AS s
  WHERE NOT EXISTS (SELECT 1 FROM old AS o WHERE o.type = s.type AND o.value = s.value)
  ON CONFLICT (org_id, type, value) DO UPDATE SET last_seen = greatest(i.last_seen, EXCLUDED.last_seen)
  RETURNING i.id, i.type, i.value, i.score, (xmax = 0) AS created
)
INSERT INTO @KEYS@ (type, value, id, first_ord, created, outcome, score)
SELECT n.type, n.value, n.id, s.ord, n.created, CASE WHEN n.created THEN 'created' ELSE 'same' END, n.score
FROM ins AS n JOIN src AS s ON s.type = n.type AND s.value = n.value
UNION ALL
SELECT d.type, d.value, d.id, d.ord, false, CASE WHEN d.changes <> '{}'::jsonb THEN 'updated' ELSE 'same' END,
       d.score
FROM diffs AS d
"""
_OUTCOMES = _sql(
    """
SELECT s.ord, k.id, k.created AND s.ord = k.first_ord AS new, NOT k.created OR s.ord <> k.first_ord AS merged
FROM @STAGING@ AS s JOIN @KEYS@ AS k ON k.type = s.type AND k.value = s.value
WHERE @LIVE@
"""
)
_MERGE = _sql(_MERGE_SQL)
_STORE = _sql(
    """
INSERT INTO stix_objects AS o (id, org_id, stix_id, type, modified, object, native_kind, native_id,
                               collection_id, created_at, updated_at)
SELECT @UUID7@, :org_id, s.stix_id, 'indicator', s.modified, s.object, 'indicator', k.id, :collection_id,
       :now, :now
FROM @STAGING@ AS s JOIN @KEYS@ AS k ON k.type = s.type AND k.value = s.value
WHERE @LIVE@
ON CONFLICT (org_id, stix_id) DO UPDATE SET
  type = EXCLUDED.type, modified = EXCLUDED.modified, object = EXCLUDED.object,
  native_kind = EXCLUDED.native_kind, native_id = EXCLUDED.native_id,
  collection_id = EXCLUDED.collection_id, updated_at = EXCLUDED.updated_at
"""
)
_DROP = _sql("DELETE FROM @STAGING@ WHERE ord = ANY(CAST(:ords AS int[]))")
_SET_TLP = _sql(
    "UPDATE @STAGING@ AS s SET tlp = m.tlp "
    "FROM unnest(CAST(:marks AS text[]), CAST(:tlps AS text[])) AS m(marks, tlp) "
    "WHERE s.tlp IS NULL AND s.marks = m.marks"
)
_EXCLUDE = _sql("UPDATE @STAGING@ AS s SET type = NULL WHERE @LIVE@ RETURNING s.ord")
_TRUNCATE = _sql("TRUNCATE @STAGING@, @KEYS@")
_ANALYZE_STAGING = _sql("ANALYZE @STAGING@")
_ANALYZE_KEYS = _sql("ANALYZE @KEYS@")
_ANNOUNCE = _sql("SELECT id, type, value, score, outcome FROM @KEYS@ WHERE outcome IN ('created', 'updated')")


MERGE_WORK_MEM = "64MB"
_SETTINGS_READ = "SELECT current_setting('jit'), current_setting('work_mem')"
_SETTINGS_WRITE = "SELECT set_config('jit', :jit, true), set_config('work_mem', :work_mem, true)"


class IndicatorStaging:
    """STIX indicators COPYed into a temporary table as they are read, then merged set-based (PostgreSQL).

    Every step is one statement over the whole import: the stored-copy check, the merge into
    `indicators` (with history and STIX ids), and the upsert of the objects into `stix_objects`.
    """

    def __init__(self, session: AsyncSession, org_id: uuid.UUID) -> None:
        self.session = session
        self.org_id = org_id
        self.driver: Any = None

    @property
    def started(self) -> bool:
        """True once the staging tables exist in this transaction."""
        return self.driver is not None

    async def start(self) -> None:
        """Create the staging tables (dropped at commit)."""
        await self.session.execute(_CREATE_STAGING)
        await self.session.execute(_CREATE_KEYS)
        await self.session.execute(_TRUNCATE)
        connection = await self.session.connection()
        raw = await connection.get_raw_connection()
        self.driver = raw.driver_connection

    async def reset(self) -> None:
        """Empty the staging tables (after a merged part, before the next)."""
        await self.session.execute(_TRUNCATE)

    async def copy(self, rows: list[tuple[Any, ...]]) -> None:
        """Append rows (tuples in STAGING_COLUMNS order) with COPY."""
        if rows:
            await self.driver.copy_records_to_table(STAGING, records=rows, columns=STAGING_COLUMNS)

    async def prepare(self, dropped: list[int], marks: dict[str, str]) -> None:
        """Forget copies superseded later in the bundle; set the TLP of rows naming bundle markings."""
        if dropped:
            await self.session.execute(_DROP, {"ords": dropped})
        if marks:
            await self.session.execute(_SET_TLP, {"marks": list(marks), "tlps": list(marks.values())})
        await self.session.execute(_ANALYZE_STAGING)

    async def stored_state(self) -> Sequence[Any]:
        """(ord, 'unchanged' | 'updated', native kind, native id) of rows with a stored copy."""
        return (await self.session.execute(_STORED_STATE, {"org_id": self.org_id})).all()

    async def exclude_all(self) -> list[int]:
        """Take every live row out of the merge (all refused); their ords."""
        result = await self.session.execute(_EXCLUDE)
        return [r[0] for r in result.all()]

    async def merge(
        self,
        *,
        now: datetime,
        project_id: uuid.UUID | None,
        source: str | None,
        created_by: uuid.UUID | None,
        actor_api_key_id: uuid.UUID | None,
    ) -> Sequence[Any]:
        """Merge the live rows into indicators; (ord, native id, new, merged) of each row."""
        # The planner prices the fold of repeated values high enough to JIT-compile the statement
        # (~200 ms of compilation for a plan that runs once), and its sorts of the whole import spill to
        # disk at the default work_mem: both set for these statements only.
        saved = (await self.session.execute(text(_SETTINGS_READ))).one()
        await self.session.execute(text(_SETTINGS_WRITE), {"jit": "off", "work_mem": MERGE_WORK_MEM})
        await self.session.execute(
            _MERGE,
            {
                "org_id": self.org_id,
                "now": now,
                "project_id": project_id,
                "sources": orjson.dumps([source] if source else []).decode(),
                "created_by": created_by,
                "actor_user_id": created_by,
                "actor_api_key_id": actor_api_key_id,
            },
        )
        await self.session.execute(_ANALYZE_KEYS)
        outcomes = (await self.session.execute(_OUTCOMES)).all()
        # Restored only on success: a failed statement aborts the transaction, settings and all.
        await self.session.execute(text(_SETTINGS_WRITE), {"jit": saved[0], "work_mem": saved[1]})
        return outcomes

    async def announced(self) -> Sequence[Any]:
        """(id, type, value, score, outcome) of indicators the merge created or changed."""
        return (await self.session.execute(_ANNOUNCE, {"org_id": self.org_id})).all()

    async def store(self, now: datetime, collection_id: uuid.UUID | None) -> None:
        """Insert or replace the merged objects in stix_objects, with their native ids."""
        await self.session.execute(
            _STORE, {"org_id": self.org_id, "now": now, "collection_id": collection_id}
        )

    async def natives(self, stix_ids: Collection[str]) -> dict[str, tuple[str, uuid.UUID]]:
        """(native kind, native id) of stored objects by STIX id (refs of reports, relationships)."""
        out: dict[str, tuple[str, uuid.UUID]] = {}
        wanted = list(stix_ids)
        for start in range(0, len(wanted), CHUNK):
            rows = await self.session.execute(
                select(StixObject.stix_id, StixObject.native_kind, StixObject.native_id).where(
                    StixObject.org_id == self.org_id,
                    StixObject.stix_id.in_(wanted[start : start + CHUNK]),
                    StixObject.native_id.is_not(None),
                )
            )
            for stix_id, kind, native in rows.all():
                if kind and native is not None:
                    out[stix_id] = (kind, native)
        return out
