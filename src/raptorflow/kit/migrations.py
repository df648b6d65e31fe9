"""Alembic driven from code: upgrade, offline SQL, and the up-to-date check used at start-up."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from raptorflow.kit.db import ensure_sqlite_directory

MIGRATIONS_DIR = Path(__file__).resolve().parents[3] / "migrations"


def alembic_config(database_url: str, connection: Connection | None = None) -> Config:
    """An Alembic config pointing at migrations/ and the given database."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def upgrade(database_url: str, revision: str = "head", *, sql: bool = False) -> None:
    """Apply migrations up to `revision` (or print their SQL when sql=True). Call outside an event loop."""
    if not sql:
        ensure_sqlite_directory(database_url)
    command.upgrade(alembic_config(database_url), revision, sql=sql)


def upgrade_on_connection(connection: Connection, database_url: str, revision: str = "head") -> None:
    """Apply migrations on an open sync connection (used from AsyncConnection.run_sync)."""
    command.upgrade(alembic_config(database_url, connection), revision)


def head_revisions() -> set[str]:
    """The revision ids the code expects."""
    script = ScriptDirectory.from_config(alembic_config("sqlite+aiosqlite://"))
    return set(script.get_heads())


async def current_revisions(engine: AsyncEngine) -> set[str]:
    """The revision ids the database is at (empty when never migrated)."""

    def _read(conn: Connection) -> set[str]:
        return set(MigrationContext.configure(conn).get_current_heads())

    async with engine.connect() as conn:
        return await conn.run_sync(_read)


async def is_up_to_date(engine: AsyncEngine) -> bool:
    """True when the database schema is at the code's head revision."""
    return await current_revisions(engine) == head_revisions()


def revision_constant(filename: str, name: str) -> str:
    """A text constant of a migration file (e.g. the SQL definition a later revision replaces and its
    downgrade restores), read from the file as it was written rather than copied."""
    path = MIGRATIONS_DIR / "versions" / filename
    spec = importlib.util.spec_from_file_location(f"raptorflow_migration_{path.stem}", path)
    if spec is None or spec.loader is None:
        raise FileNotFoundError(path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return str(getattr(module, name))
