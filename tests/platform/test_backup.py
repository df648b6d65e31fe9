"""`raptorflow backup` / `restore`: a backup of the live database restores into a fresh one."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from typer.testing import CliRunner, Result

from raptorflow import cli as raptorflow_cli
from tests.conftest import create_org, create_pg_database, drop_pg_database, pg_url_for, sign_up


def cli(database_url: str, *args: str) -> Result:
    """Run the raptorflow command (in-process: the command's own imports take seconds) on a database."""
    env = {"RAPTORFLOW_DATABASE_URL": database_url, "RAPTORFLOW_LOG_FORMAT": "json"}
    return CliRunner().invoke(raptorflow_cli.app, list(args), env=env)


async def _org_names(database_url: str) -> list[str]:
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as conn:
            return [r[0] for r in await conn.execute(text("SELECT slug FROM organizations ORDER BY slug"))]
    finally:
        await engine.dispose()


async def test_backup_restores_into_a_fresh_database(
    client: httpx.AsyncClient, database_url: str, tmp_path: Path
) -> None:
    actor = await sign_up(client, "backup@example.com")
    await create_org(actor, "backed-up")
    archive = tmp_path / "raptorflow.backup"
    made = await asyncio.to_thread(cli, database_url, "backup", str(archive))
    assert made.exit_code == 0, made.output
    assert archive.stat().st_size > 0

    refused = await asyncio.to_thread(cli, database_url, "restore", str(archive))
    assert refused.exit_code != 0 and "--yes" in refused.output

    fresh_name = None
    if database_url.startswith("sqlite"):
        fresh = f"sqlite+aiosqlite:///{tmp_path / 'restored.db'}"
    else:
        fresh_name = await create_pg_database()
        fresh = pg_url_for(fresh_name)
    try:
        restored = await asyncio.to_thread(cli, fresh, "restore", "--yes", str(archive))
        assert restored.exit_code == 0, restored.output
        assert "backed-up" in await _org_names(fresh)
    finally:
        if fresh_name is not None:
            await drop_pg_database(fresh_name)


async def test_backup_of_a_missing_sqlite_file_fails_clearly(tmp_path: Path) -> None:
    result = await asyncio.to_thread(
        cli, f"sqlite+aiosqlite:///{tmp_path / 'nope.db'}", "backup", str(tmp_path / "b.db")
    )
    assert result.exit_code == 1 and "does not exist" in result.output
