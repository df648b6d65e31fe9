"""RLS policies compare uuids (index-friendly); trigram search through a security-definer function

Revision ID: 5b1c0e7d2a91
Revises: 8658974d21bb
Create Date: 2026-11-22 07:05:00
"""

from collections.abc import Sequence

from alembic import op

from raptorflow.kit.tenancy import APP_ROLE, replace_tenant_policy_sql

revision: str = "5b1c0e7d2a91"
down_revision: str | None = "8658974d21bb"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TENANT_TABLES = (
    "memberships",
    "invitations",
    "workspaces",
    "api_keys",
    "projects",
    "indicators",
    "indicator_history",
    "sightings",
    "threat_actors",
    "campaigns",
    "vulnerabilities",
    "reports",
    "relationships",
)

# Row-level security cannot use the trigram index (LIKE is not leakproof, so PostgreSQL evaluates it
# only after the policy, row by row). This function runs the index search for the org bound to the
# transaction (app.org_id) only, so it cannot reach another org; the caller still reads the rows
# through RLS.
SEARCH_FUNCTION = """
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
GRANTS = (
    "REVOKE ALL ON FUNCTION raptorflow_search_indicators(text, integer) FROM PUBLIC",
    f"GRANT EXECUTE ON FUNCTION raptorflow_search_indicators(text, integer) TO {APP_ROLE}",
)


def upgrade() -> None:
    if op.get_context().dialect.name != "postgresql":
        return
    for table in TENANT_TABLES:
        for statement in replace_tenant_policy_sql(table):
            op.execute(statement)
    op.execute(SEARCH_FUNCTION)
    for statement in GRANTS:
        op.execute(statement)


def downgrade() -> None:
    if op.get_context().dialect.name != "postgresql":
        return
    op.execute("DROP FUNCTION IF EXISTS raptorflow_search_indicators(text, integer)")
