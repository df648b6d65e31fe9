"""The `raptorflow` command."""

from __future__ import annotations

import asyncio
from typing import Annotated, NoReturn

import typer
import uvicorn

from raptorflow import __version__
from raptorflow.config import Settings, SettingsError, load_settings
from raptorflow.kit import migrations
from raptorflow.kit.db import create_engine
from raptorflow.kit.logging import configure_logging, get_logger

app = typer.Typer(help="RaptorFlow threat-intelligence platform.", no_args_is_help=True, add_completion=False)


def fail(message: str, code: int = 2) -> NoReturn:
    """Print one line to stderr and exit."""
    typer.echo(f"raptorflow: {message}", err=True)
    raise typer.Exit(code)


def settings_or_exit() -> Settings:
    """Load settings or exit with the one-line reason."""
    try:
        return load_settings()
    except SettingsError as exc:
        fail(str(exc))


def _describe_db_error(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return f"cannot reach the database ({type(exc).__name__}: {text[:200]})"


async def _schema_state(settings: Settings) -> tuple[set[str], set[str]]:
    engine = create_engine(settings.database_url)
    try:
        return await migrations.current_revisions(engine), migrations.head_revisions()
    finally:
        await engine.dispose()


def prepare_database(settings: Settings) -> None:
    """SQLite: apply pending migrations. PostgreSQL: refuse an out-of-date schema."""
    if settings.is_sqlite:
        try:
            migrations.upgrade(settings.database_url)
        except Exception as exc:
            fail(_describe_db_error(exc))
        return
    try:
        current, head = asyncio.run(_schema_state(settings))
    except Exception as exc:
        fail(_describe_db_error(exc) + " — check RAPTORFLOW_DATABASE_URL")
    if current != head:
        fail(
            f"the database schema is out of date (at {sorted(current) or 'nothing'}, "
            f"code needs {sorted(head)}); run `raptorflow migrate` first"
        )


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    workers: Annotated[int, typer.Option(min=1, max=64, help="Worker processes.")] = 1,
) -> None:
    """Serve the API, TAXII and console (applies migrations itself on SQLite)."""
    settings = settings_or_exit()
    configure_logging(fmt=settings.effective_log_format.value, level=settings.log_level)
    prepare_database(settings)
    get_logger("raptorflow").info("serve.start", url=f"http://{host}:{port}", workers=workers)
    uvicorn.run(
        "raptorflow.app:app_from_env",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        access_log=False,
        log_level="warning",
        proxy_headers=True,
    )


@app.command()
def migrate(
    sql: Annotated[bool, typer.Option("--sql", help="Print the SQL instead of running it.")] = False,
    revision: Annotated[str, typer.Option(help="Target revision.")] = "head",
) -> None:
    """Apply database migrations (Alembic upgrade head)."""
    settings = settings_or_exit()
    try:
        migrations.upgrade(settings.database_url, revision, sql=sql)
    except Exception as exc:
        fail(_describe_db_error(exc))
    if not sql:
        typer.echo(f"database at {', '.join(sorted(migrations.head_revisions())) or 'base'}", err=True)


@app.command()
def version() -> None:
    """Print the version."""
    typer.echo(__version__)


def main() -> None:
    """Entry point for `python -m raptorflow`."""
    app()


if __name__ == "__main__":
    main()
