"""Lookup in one statement: a plpgsql function that binds the org (RLS stays on) and answers a batch

Revision ID: a7e1c0d00704
Revises: a7e1c0d00708
Create Date: 2026-12-01 08:40:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "a7e1c0d00704"
down_revision: str | None = "a7e1c0d00708"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Not SECURITY DEFINER: it runs as the caller (the app role), so row-level security applies to every
# table it reads. It binds the org itself, transaction-locally, so a lookup is one round trip in
# autocommit (no BEGIN / set_config / COMMIT). Related actors and campaigns come aggregated per row.
LOOKUP_FUNCTION = """
CREATE OR REPLACE FUNCTION raptorflow_lookup(p_org uuid, p_types text[], p_values text[])
RETURNS TABLE (
    r_id uuid, r_type text, r_value text, r_score integer, r_classification text, r_tlp text,
    r_tags jsonb, r_valid_until timestamptz, r_false_positive boolean, r_last_seen timestamptz,
    r_sightings_count integer, r_archived_at timestamptz, r_related jsonb, r_org_settings jsonb
)
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE AS $fn$
DECLARE
    hit record;
BEGIN
    PERFORM set_config('app.org_id', p_org::text, true);
    IF cardinality(p_types) = 1 THEN
        -- One value (the SIEM's call): small statements, each with a cached plan; the join for
        -- related objects runs only when the indicator has links at all.
        SELECT i.id, i.type, i.value, i.score, i.classification, i.tlp, i.tags, i.valid_until,
               i.false_positive, i.last_seen, i.sightings_count, i.archived_at
        INTO hit FROM indicators i
        WHERE i.org_id = p_org AND i.type = p_types[1] AND i.value = p_values[1];
        IF NOT FOUND THEN
            RETURN;
        END IF;
        r_id := hit.id; r_type := hit.type; r_value := hit.value; r_score := hit.score;
        r_classification := hit.classification; r_tlp := hit.tlp; r_tags := hit.tags;
        r_valid_until := hit.valid_until; r_false_positive := hit.false_positive;
        r_last_seen := hit.last_seen; r_sightings_count := hit.sightings_count;
        r_archived_at := hit.archived_at; r_related := '[]'::jsonb;
        IF EXISTS (SELECT 1 FROM relationships r WHERE r.org_id = p_org AND r.source_id = hit.id)
           OR EXISTS (SELECT 1 FROM relationships r WHERE r.org_id = p_org AND r.target_id = hit.id) THEN
            SELECT coalesce(jsonb_agg(jsonb_build_object(
            'kind', l.kind, 'id', l.obj, 'name', l.name, 'relationship_type', l.rel
        )), '[]'::jsonb) INTO r_related
            FROM (
            SELECT 'threat-actor' AS kind, x.id AS obj, x.name, r.relationship_type AS rel
            FROM relationships r JOIN threat_actors x ON x.org_id = p_org AND x.id = r.target_id
            WHERE r.org_id = p_org AND r.source_id = hit.id AND r.target_type = 'threat-actor'
            UNION ALL
            SELECT 'threat-actor', x.id, x.name, r.relationship_type
            FROM relationships r JOIN threat_actors x ON x.org_id = p_org AND x.id = r.source_id
            WHERE r.org_id = p_org AND r.target_id = hit.id AND r.source_type = 'threat-actor'
            UNION ALL
            SELECT 'campaign' AS kind, x.id AS obj, x.name, r.relationship_type AS rel
            FROM relationships r JOIN campaigns x ON x.org_id = p_org AND x.id = r.target_id
            WHERE r.org_id = p_org AND r.source_id = hit.id AND r.target_type = 'campaign'
            UNION ALL
            SELECT 'campaign', x.id, x.name, r.relationship_type
            FROM relationships r JOIN campaigns x ON x.org_id = p_org AND x.id = r.source_id
            WHERE r.org_id = p_org AND r.target_id = hit.id AND r.source_type = 'campaign'
            ) l;
        END IF;
        SELECT o.settings INTO r_org_settings FROM organizations o WHERE o.id = p_org;
        RETURN NEXT;
        RETURN;
    END IF;
    -- A batch: set-based throughout. The caller passes distinct keys (a DISTINCT here costs more
    -- than the join); links are found for all hits at once. EXECUTE plans each call with the real
    -- array sizes: a plan cached for the connection's life, made while the table was small or not
    -- yet analyzed, once looped over a sequential scan for every value (10 s for 10,000 values).
    RETURN QUERY EXECUTE $q$
    WITH hits AS MATERIALIZED (
        SELECT i.id, i.type, i.value, i.score, i.classification, i.tlp, i.tags, i.valid_until,
               i.false_positive, i.last_seen, i.sightings_count, i.archived_at
        FROM unnest($2, $3) AS w(t, v)
        JOIN indicators i ON i.org_id = $1 AND i.type = w.t AND i.value = w.v
    ), links AS (
        SELECT r.source_id AS ind, 'threat-actor' AS kind, x.id AS obj, x.name, r.relationship_type AS rel
        FROM relationships r JOIN threat_actors x ON x.org_id = $1 AND x.id = r.target_id
        WHERE r.org_id = $1 AND r.target_type = 'threat-actor' AND r.source_id IN (SELECT h.id FROM hits h)
        UNION ALL
        SELECT r.target_id, 'threat-actor', x.id, x.name, r.relationship_type
        FROM relationships r JOIN threat_actors x ON x.org_id = $1 AND x.id = r.source_id
        WHERE r.org_id = $1 AND r.source_type = 'threat-actor' AND r.target_id IN (SELECT h.id FROM hits h)
        UNION ALL
        SELECT r.source_id AS ind, 'campaign' AS kind, x.id AS obj, x.name, r.relationship_type AS rel
        FROM relationships r JOIN campaigns x ON x.org_id = $1 AND x.id = r.target_id
        WHERE r.org_id = $1 AND r.target_type = 'campaign' AND r.source_id IN (SELECT h.id FROM hits h)
        UNION ALL
        SELECT r.target_id, 'campaign', x.id, x.name, r.relationship_type
        FROM relationships r JOIN campaigns x ON x.org_id = $1 AND x.id = r.source_id
        WHERE r.org_id = $1 AND r.source_type = 'campaign' AND r.target_id IN (SELECT h.id FROM hits h)
    ), grouped AS (
        SELECT l.ind, jsonb_agg(jsonb_build_object(
            'kind', l.kind, 'id', l.obj, 'name', l.name, 'relationship_type', l.rel
        )) AS related
        FROM links l GROUP BY l.ind
    )
    SELECT h.id, h.type::text, h.value, h.score, h.classification::text, h.tlp::text, h.tags,
           h.valid_until, h.false_positive, h.last_seen, h.sightings_count, h.archived_at,
           coalesce(g.related, '[]'::jsonb),
           (SELECT o.settings FROM organizations o WHERE o.id = $1)
    FROM hits h LEFT JOIN grouped g ON g.ind = h.id
    $q$ USING p_org, p_types, p_values;
END
$fn$
"""


def upgrade() -> None:
    """Create the lookup function (PostgreSQL only; SQLite keeps the statements in the repository)."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute(LOOKUP_FUNCTION)


def downgrade() -> None:
    """Drop it."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS raptorflow_lookup(uuid, text[], text[])")
