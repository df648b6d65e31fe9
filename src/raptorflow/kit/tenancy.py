"""Tenant scoping: the org-bound repository base and PostgreSQL row-level-security context."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from sqlalchemy import Connection, Select, event, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session, SessionTransaction

from raptorflow.kit.db import dialect_name

SelectT = TypeVar("SelectT", bound=Select)  # type: ignore[type-arg]

# Tables whose policies use these settings are listed in the migrations.
ORG_SETTING = "app.org_id"
SCOPE_SETTING = "app.scope"


_SET_ORG = text(f"SELECT set_config('{ORG_SETTING}', :v, true)")
# session.info keys: the org this session works for, and the org bound in the open transaction.
_ORG_INFO = "raptorflow.org_id"
_BOUND_INFO = "raptorflow.org_bound"


@event.listens_for(Session, "after_begin")
def _bind_on_begin(session: Session, _transaction: SessionTransaction, connection: Connection) -> None:
    org = session.info.get(_ORG_INFO)
    if org is not None and connection.dialect.name == "postgresql":
        connection.execute(_SET_ORG, {"v": org})
        session.info[_BOUND_INFO] = org


@event.listens_for(Session, "after_transaction_end")
def _unbound_on_end(session: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is None:
        session.info.pop(_BOUND_INFO, None)


async def bind_org(session: AsyncSession, org_id: uuid.UUID) -> None:
    """Make `org_id` the tenant of this session's transactions (PostgreSQL RLS reads it; SQLite has none).

    Lazy: a session that has not touched the database yet binds the org when its transaction begins,
    so a request that never queries (a lookup answered on its own connection, a cached API key) pays
    no round trip; every later transaction of the session is bound again on its begin.
    """
    if dialect_name(session) != "postgresql":
        return
    value = str(org_id)
    session.info[_ORG_INFO] = value
    if session.in_transaction() and session.info.get(_BOUND_INFO) != value:
        conn = await session.connection()  # may begin, and so bind, the transaction itself
        if session.info.get(_BOUND_INFO) != value:
            await conn.execute(_SET_ORG, {"v": value})
            session.info[_BOUND_INFO] = value


@asynccontextmanager
async def cross_tenant(session: AsyncSession) -> AsyncIterator[None]:
    """Let the enclosed queries see every org's rows (identity resolution only, never for user data)."""
    postgres = dialect_name(session) == "postgresql"
    if postgres:
        await session.execute(text("SELECT set_config(:k, 'system', true)"), {"k": SCOPE_SETTING})
    try:
        yield
    finally:
        if postgres:
            await session.execute(text("SELECT set_config(:k, '', true)"), {"k": SCOPE_SETTING})


class TenantRepository:
    """Base of every org-owned repository: built with the org id, every query goes through `scoped`."""

    model: Any

    def __init__(self, session: AsyncSession, org_id: uuid.UUID) -> None:
        self.session = session
        self.org_id = org_id

    def scoped(self, stmt: SelectT) -> SelectT:
        """Restrict a SELECT on `model` to this org."""
        return stmt.where(self.model.org_id == self.org_id)


APP_ROLE = "raptorflow_app"
# The org side is a uuid compared with a stable expression, so the planner can use org_id indexes
# under RLS (comparing org_id::text could not); NULLIF turns an unset setting into "no org".
_VISIBLE = (
    f"(org_id = NULLIF(current_setting('{ORG_SETTING}', true), '')::uuid"
    f" OR current_setting('{SCOPE_SETTING}', true) = 'system')"
)


def create_app_role_sql() -> list[str]:
    """The non-owner role the application runs as on PostgreSQL (created once per cluster)."""
    return [
        f"DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{APP_ROLE}') THEN "
        f"CREATE ROLE {APP_ROLE} NOLOGIN NOSUPERUSER NOBYPASSRLS; END IF; END $$",
        # The login role must be able to SET ROLE to it (superusers already can).
        f"DO $$ BEGIN IF NOT pg_has_role(current_user, '{APP_ROLE}', 'MEMBER') THEN "
        f"EXECUTE format('GRANT {APP_ROLE} TO %I', current_user); END IF; END $$",
        f"GRANT USAGE ON SCHEMA public TO {APP_ROLE}",
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {APP_ROLE}",
        f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {APP_ROLE}",
        # Tables created by later migrations (run by the same owner) get the same grants.
        f"ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {APP_ROLE}",
        f"ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO {APP_ROLE}",
    ]


def replace_tenant_policy_sql(table: str) -> list[str]:
    """Recreate a tenant table's isolation policy with the current expression."""
    return [f"DROP POLICY IF EXISTS tenant_isolation ON {table}", *tenant_rls_sql(table)[1:]]


def tenant_rls_sql(table: str) -> list[str]:
    """Row-level security on `org_id` for a tenant table: rows of other orgs are invisible and unwritable."""
    return [
        f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY",
        f"CREATE POLICY tenant_isolation ON {table} USING {_VISIBLE} WITH CHECK {_VISIBLE}",
    ]


def append_only_rls_sql(table: str, columns_erasable: tuple[str, ...] = ()) -> list[str]:
    """An append-only tenant table: read own org's rows, insert anywhere, never update or delete.

    `columns_erasable` may still be set (to NULL, for GDPR erasure) through a column-level grant.
    """
    statements = [
        f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY",
        f"CREATE POLICY tenant_read ON {table} FOR SELECT USING {_VISIBLE}",
        f"CREATE POLICY append ON {table} FOR INSERT WITH CHECK (true)",
        f"REVOKE UPDATE, DELETE, TRUNCATE ON {table} FROM {APP_ROLE}",
    ]
    if columns_erasable:
        cols = ", ".join(columns_erasable)
        statements += [
            f"GRANT UPDATE ({cols}) ON {table} TO {APP_ROLE}",
            f"CREATE POLICY erase ON {table} FOR UPDATE USING {_VISIBLE} WITH CHECK {_VISIBLE}",
        ]
    return statements
