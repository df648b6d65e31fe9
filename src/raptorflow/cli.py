"""The `raptorflow` command."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, NoReturn, TypeVar

import typer
import uvicorn
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from raptorflow import __version__
from raptorflow.accounts.schemas import OrganizationCreate
from raptorflow.accounts.service import OrganizationService
from raptorflow.audit import service as audit
from raptorflow.audit.service import AuditContext
from raptorflow.auth.principal import Principal
from raptorflow.auth.repository import IdentityRepository
from raptorflow.auth.service import AuthService, normalize_email
from raptorflow.auth.tokens import TokenIssuer, rotate_keys
from raptorflow.config import Registration, Settings, SettingsError, load_settings
from raptorflow.intel.attack import loader as attack_loader
from raptorflow.intel.attack import service as attack_service
from raptorflow.kit import migrations
from raptorflow.kit.db import create_engine, session_factory
from raptorflow.kit.errors import RaptorFlowError
from raptorflow.kit.logging import configure_logging, get_logger
from raptorflow.kit.ratelimit import Limiter, make_storage

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


user_app = typer.Typer(help="Manage users.", no_args_is_help=True)
org_app = typer.Typer(help="Manage organizations.", no_args_is_help=True)
keys_app = typer.Typer(help="Manage token-signing keys.", no_args_is_help=True)
audit_app = typer.Typer(help="Audit log tools.", no_args_is_help=True)
attack_app = typer.Typer(help="MITRE ATT&CK catalog.", no_args_is_help=True)
app.add_typer(user_app, name="user")
app.add_typer(org_app, name="org")
app.add_typer(keys_app, name="keys")
app.add_typer(audit_app, name="audit")
app.add_typer(attack_app, name="attack")

CLI_CONTEXT = AuditContext(user_agent="raptorflow-cli")
T = TypeVar("T")


def in_transaction(settings: Settings, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    """Run `work` in one transaction on the owner connection (CLI commands are operator actions)."""

    async def runner() -> T:
        engine = create_engine(settings.database_url)
        try:
            async with session_factory(engine)() as session:
                try:
                    result = await work(session)
                    await session.commit()
                    return result
                except BaseException:
                    await session.rollback()
                    raise
        finally:
            await engine.dispose()

    try:
        return asyncio.run(runner())
    except RaptorFlowError as exc:
        fail(exc.detail, 1)


@user_app.command("create")
def user_create(
    email: Annotated[str, typer.Option(help="Email address (the sign-in name).")],
    name: Annotated[str, typer.Option(help="Display name.")],
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from stdin.")
    ] = False,
) -> None:
    """Create a built-in account (prompts for the password unless --password-stdin)."""
    settings = settings_or_exit()
    prepare_database(settings)
    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)

    async def work(session: AsyncSession) -> str:
        # An operator creates accounts whatever the self-service registration mode is.
        operator_settings = settings.model_copy(update={"registration": Registration.open})
        issuer = TokenIssuer(
            session_factory(session.bind),  # type: ignore[arg-type]
            issuer=settings.public_url,
            audience="raptorflow",
            ttl_s=settings.access_token_ttl_s,
            secret_key=settings.secret_key,
        )
        service = AuthService(session, operator_settings, issuer, Limiter(make_storage(None)))
        user = await service.register(email, password, name, CLI_CONTEXT)
        return str(user.id)

    typer.echo(in_transaction(settings, work))


@org_app.command("create")
def org_create(
    name: Annotated[str, typer.Option(help="Organization name.")],
    slug: Annotated[str, typer.Option(help="Short unique id (lower-case letters, digits, dashes).")],
    owner: Annotated[str, typer.Option(help="Email of the existing user who will own it.")],
) -> None:
    """Create an organization owned by an existing user."""
    settings = settings_or_exit()
    prepare_database(settings)
    try:
        body = OrganizationCreate(name=name, slug=slug)
    except ValidationError as exc:
        fail("; ".join(f"--{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()))

    async def work(session: AsyncSession) -> str:
        user = await IdentityRepository(session).user_by_email(normalize_email(owner))
        if user is None:
            raise RaptorFlowError(f"no user with email {owner}; create it with `raptorflow user create`")
        principal = Principal(user_id=user.id, user_agent="raptorflow-cli")
        org = await OrganizationService(session).create(principal, body)
        return str(org.id)

    typer.echo(in_transaction(settings, work))


@keys_app.command("rotate")
def keys_rotate() -> None:
    """Add a new token-signing key; older keys keep verifying until their tokens expire."""
    settings = settings_or_exit()
    prepare_database(settings)

    async def work(session: AsyncSession) -> str:
        return (await rotate_keys(session, settings.secret_key)).kid

    typer.echo(in_transaction(settings, work))


@audit_app.command("verify")
def audit_verify() -> None:
    """Recompute every organization's audit hash chain; exit 1 on the first break."""
    settings = settings_or_exit()
    prepare_database(settings)
    reports = in_transaction(settings, audit.verify_all)
    broken = [r for r in reports if not r.ok]
    for report in reports:
        status = "ok" if report.ok else f"BROKEN: {report.problem}"
        typer.echo(f"{report.org_id}  {report.entries} entries  {status}")
    if broken:
        raise typer.Exit(1)
    typer.echo(f"{len(reports)} chains verified", err=True)


@attack_app.command("sync")
def attack_sync(
    file: Annotated[
        Path | None,
        typer.Option("--file", help="A STIX bundle, .json or .json.gz (gzip detected by content)."),
    ] = None,
    url: Annotated[
        str | None, typer.Option("--url", help="Download the bundle from this http(s) URL.")
    ] = None,
) -> None:
    """Load or refresh the ATT&CK catalog from a STIX 2.0/2.1 bundle (idempotent)."""
    if (file is None) == (url is None):
        fail("pass exactly one of --file PATH or --url URL (e.g. --file enterprise-attack.json.gz)")
    settings = settings_or_exit()
    started = time.perf_counter()
    # Read and parse before touching the database: a bad file or URL changes nothing.
    try:
        data = attack_loader.read_file(file) if file is not None else attack_loader.fetch_url(str(url))
        bundle = attack_loader.parse_bundle(data)
    except RaptorFlowError as exc:
        fail(exc.detail, 1)
    del data  # the raw bundle (tens of MB) is not needed once parsed
    prepare_database(settings)

    async def work(session: AsyncSession) -> attack_service.SyncSummary:
        return await attack_service.sync_bundle(session, bundle)

    summary = in_transaction(settings, work)
    typer.echo(summary.line())
    typer.echo(f"loaded in {time.perf_counter() - started:.1f}s", err=True)


@app.command()
def version() -> None:
    """Print the version."""
    typer.echo(__version__)


def main() -> None:
    """Entry point for `python -m raptorflow`."""
    app()


if __name__ == "__main__":
    main()
