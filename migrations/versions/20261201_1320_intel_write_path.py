"""Cheaper indicator writes: hash values leave the trigram index (searched by prefix), project index partial

Revision ID: a7e1c0d00730
Revises: a7e1c0d00723
Create Date: 2026-12-01 13:20:00
"""

from collections.abc import Sequence

from alembic import op

from raptorflow.kit.tenancy import APP_ROLE

revision: str = "a7e1c0d00730"
down_revision: str | None = "a7e1c0d00723"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Every indicator write pays for each index of `indicators`; the trigram index is the dearest (dropping
# it alone doubled a COPY into the 1,000,000-row table). A hash is one long hex word: 33 to 129 trigrams
# (md5 to sha512), a third of all the index's entries in a typical mix, for a substring search nobody
# runs in the middle of a hash. Hashes are now found by prefix through the unique (org_id, type, value)
# btree; their tags and description stay in the trigram index. Measured on a COPY of 20,000 rows into
# a 1,000,000-row copy of the table: 9-13k rows/s before, 16-17k after.
HASH_TYPES = "('md5', 'sha1', 'sha256', 'sha512')"
NEW_EXPR = (
    f"lower(CASE WHEN type IN {HASH_TYPES} THEN '' ELSE value END"
    " || ' ' || description || ' ' || (tags)::text)"
)
OLD_EXPR = "lower(value || ' ' || description || ' ' || (tags)::text)"

# As before, a security-definer function reaches the indexes for the org bound to the transaction only
# (row-level security would force a sequential scan: LIKE is not leakproof); the caller still reads the
# rows through RLS. `hash_prefix` (lower-case hex, or NULL) adds the hashes that start with it.
SEARCH_FUNCTION = f"""
CREATE OR REPLACE FUNCTION raptorflow_search_indicators(pattern text, hash_prefix text, max_rows integer)
RETURNS TABLE (id uuid, created_at timestamptz)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    (SELECT i.id, i.created_at FROM indicators i
     WHERE i.org_id = NULLIF(current_setting('app.org_id', true), '')::uuid
       AND i.archived_at IS NULL
       AND lower(CASE WHEN i.type IN {HASH_TYPES} THEN '' ELSE i.value END
                 || ' ' || i.description || ' ' || (i.tags)::text) LIKE pattern
     LIMIT max_rows)
    UNION
    (SELECT i.id, i.created_at FROM indicators i
     WHERE hash_prefix IS NOT NULL
       AND i.org_id = NULLIF(current_setting('app.org_id', true), '')::uuid
       AND i.type = ANY (ARRAY['md5', 'sha1', 'sha256', 'sha512'])
       AND i.value >= hash_prefix AND i.value < hash_prefix || 'g'
       AND i.archived_at IS NULL
     LIMIT max_rows)
$$
"""
OLD_SEARCH_FUNCTION = """
CREATE OR REPLACE FUNCTION raptorflow_search_indicators(pattern text, max_rows integer)
RETURNS TABLE (id uuid, created_at timestamptz)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    SELECT i.id, i.created_at FROM indicators i
    WHERE i.org_id = NULLIF(current_setting('app.org_id', true), '')::uuid
      AND i.archived_at IS NULL
      AND lower(i.value || ' ' || i.description || ' ' || (i.tags)::text) LIKE pattern
    LIMIT max_rows
$$
"""
NEW_SIGNATURE = "raptorflow_search_indicators(text, text, integer)"
OLD_SIGNATURE = "raptorflow_search_indicators(text, integer)"


def _grant(signature: str) -> None:
    op.execute(f"REVOKE ALL ON FUNCTION {signature} FROM PUBLIC")
    op.execute(f"GRANT EXECUTE ON FUNCTION {signature} TO {APP_ROLE}")


def upgrade() -> None:
    """Rebuild the trigram index without hash values; the project index only where there is a project."""
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP INDEX IF EXISTS ix_indicators_search")
    op.execute(f"CREATE INDEX ix_indicators_search ON indicators USING gin (({NEW_EXPR}) gin_trgm_ops)")
    op.execute(f"DROP FUNCTION IF EXISTS {OLD_SIGNATURE}")
    op.execute(SEARCH_FUNCTION)
    _grant(NEW_SIGNATURE)
    # Most indicators (every bulk feed without a project) have no project: they no longer enter it.
    op.execute("DROP INDEX IF EXISTS ix_indicators_org_project")
    op.execute(
        "CREATE INDEX ix_indicators_org_project ON indicators (org_id, project_id) WHERE project_id IS NOT NULL"
    )


def downgrade() -> None:
    """Back to the full trigram index and project index."""
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP INDEX IF EXISTS ix_indicators_org_project")
    op.execute("CREATE INDEX ix_indicators_org_project ON indicators (org_id, project_id)")
    op.execute(f"DROP FUNCTION IF EXISTS {NEW_SIGNATURE}")
    op.execute(OLD_SEARCH_FUNCTION)
    _grant(OLD_SIGNATURE)
    op.execute("DROP INDEX IF EXISTS ix_indicators_search")
    op.execute(f"CREATE INDEX ix_indicators_search ON indicators USING gin (({OLD_EXPR}) gin_trgm_ops)")
