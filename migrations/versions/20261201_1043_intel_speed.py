"""Batch lookups answered as JSON by PostgreSQL: effective score, expiry and links in one statement

Revision ID: a7e1c0d00723
Revises: a7e1c0d00721
Create Date: 2026-12-01 10:40:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "a7e1c0d00723"
down_revision: str | None = "a7e1c0d00721"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# A batch of 10,000 values spent most of its time in Python turning rows into answers. Here
# PostgreSQL (on the other core) renders each live match as the JSON object the API returns, and the
# service splices it in (orjson.Fragment). The effective score is the formula of
# raptorflow.intel.indicators.scoring (base * 0.5^(age/half-life) + min(20, 5*log2(1+sightings)), 0 for
# false positives, rounded half to even as Python's round() and PostgreSQL's round(float8) both do);
# tests/intel/test_lookup_batch_json.py holds the two to the same answers. Runs as the caller: row-level
# security applies; the org is bound transaction-locally as in raptorflow_lookup.
LOOKUP_JSON_FUNCTION = r"""
CREATE OR REPLACE FUNCTION raptorflow_lookup_json(
    p_org uuid, p_types text[], p_values text[], p_now timestamptz, p_defaults jsonb, p_include_expired boolean
)
RETURNS TABLE (r_type text, r_value text, r_match text)
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE
-- At most 10,000 probes of the unique key: an index nested loop, always. Left to itself the planner
-- hashes the org's whole table when the batch is a tenth of it (137 ms at 100,000 rows, seconds at
-- millions) because it cannot estimate how many of the given keys exist.
SET enable_hashjoin = off SET enable_mergejoin = off
AS $fn$
BEGIN
    PERFORM set_config('app.org_id', p_org::text, true);
    -- EXECUTE: planned per call with the real array sizes (see raptorflow_lookup).
    RETURN QUERY EXECUTE $q$
    WITH own AS MATERIALIZED (
        SELECT coalesce(o.settings -> 'half_life_days', '{}'::jsonb) AS days FROM organizations o WHERE o.id = $1
    ), hits AS MATERIALIZED (
        SELECT i.id, i.type, i.value, i.score, i.classification, i.tlp, i.tags, i.valid_until,
               i.false_positive, i.last_seen, i.sightings_count
        FROM unnest($2, $3) AS w(t, v)
        JOIN indicators i ON i.org_id = $1 AND i.type = w.t AND i.value = w.v
        WHERE i.archived_at IS NULL AND ($6 OR i.valid_until IS NULL OR i.valid_until > $4)
    ), links AS (
        SELECT r.source_id AS ind, 'threat-actor' AS kind, x.id AS obj, x.name, r.relationship_type AS rel
        FROM relationships r JOIN threat_actors x ON x.org_id = $1 AND x.id = r.target_id
        WHERE r.org_id = $1 AND r.target_type = 'threat-actor' AND r.source_id IN (SELECT h.id FROM hits h)
        UNION ALL
        SELECT r.target_id, 'threat-actor', x.id, x.name, r.relationship_type
        FROM relationships r JOIN threat_actors x ON x.org_id = $1 AND x.id = r.source_id
        WHERE r.org_id = $1 AND r.source_type = 'threat-actor' AND r.target_id IN (SELECT h.id FROM hits h)
        UNION ALL
        SELECT r.source_id, 'campaign', x.id, x.name, r.relationship_type
        FROM relationships r JOIN campaigns x ON x.org_id = $1 AND x.id = r.target_id
        WHERE r.org_id = $1 AND r.target_type = 'campaign' AND r.source_id IN (SELECT h.id FROM hits h)
        UNION ALL
        SELECT r.target_id, 'campaign', x.id, x.name, r.relationship_type
        FROM relationships r JOIN campaigns x ON x.org_id = $1 AND x.id = r.source_id
        WHERE r.org_id = $1 AND r.source_type = 'campaign' AND r.target_id IN (SELECT h.id FROM hits h)
    ), grouped AS (
        SELECT l.ind,
               json_agg(json_build_object('id', l.obj, 'name', l.name, 'relationship_type', l.rel))
                   FILTER (WHERE l.kind = 'threat-actor') AS actors,
               json_agg(json_build_object('id', l.obj, 'name', l.name, 'relationship_type', l.rel))
                   FILTER (WHERE l.kind = 'campaign') AS campaigns
        FROM links l GROUP BY l.ind
    )
    SELECT h.type::text, h.value, json_build_object(
        'id', h.id,
        'type', h.type,
        'value', h.value,
        'effective_score', CASE WHEN h.false_positive THEN 0 ELSE greatest(0, least(100, round(
            h.score * CASE WHEN hl.days IS NULL THEN 1.0::float8 ELSE power(0.5::float8,
                greatest(0.0::float8, extract(epoch FROM ($4 - h.last_seen))::float8 / 86400.0) / hl.days) END
            + CASE WHEN h.sightings_count > 0
                   THEN least(20.0::float8, 5.0 * ln(1.0 + greatest(0, h.sightings_count)) / ln(2.0::float8))
                   ELSE 0.0::float8 END
        )))::int END,
        'classification', h.classification,
        'tlp', h.tlp,
        'tags', h.tags,
        'expired', h.valid_until IS NOT NULL AND h.valid_until <= $4,
        'false_positive', h.false_positive,
        'last_seen', to_char(h.last_seen AT TIME ZONE 'UTC',
            CASE WHEN date_trunc('second', h.last_seen) = h.last_seen
                 THEN 'YYYY-MM-DD"T"HH24:MI:SS"+00:00"' ELSE 'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"' END),
        'related', json_build_object(
            'actors', coalesce(g.actors, '[]'::json), 'campaigns', coalesce(g.campaigns, '[]'::json))
    )::text
    FROM hits h
    CROSS JOIN own
    CROSS JOIN LATERAL (
        SELECT CASE WHEN own.days ? h.type::text THEN nullif((own.days ->> h.type::text)::float8, 0)
                    ELSE ($5 ->> h.type::text)::float8 END AS days
    ) hl
    LEFT JOIN grouped g ON g.ind = h.id
    $q$ USING p_org, p_types, p_values, p_now, p_defaults, p_include_expired;
END
$fn$
"""


def upgrade() -> None:
    """Create the JSON lookup function (PostgreSQL only; SQLite answers batches in Python)."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute(LOOKUP_JSON_FUNCTION)


def downgrade() -> None:
    """Drop it."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "DROP FUNCTION IF EXISTS raptorflow_lookup_json(uuid, text[], text[], timestamptz, jsonb, boolean)"
        )
