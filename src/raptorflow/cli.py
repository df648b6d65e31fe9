"""The `raptorflow` command."""

from __future__ import annotations

import asyncio
import os
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import typer
from pydantic import ValidationError

from raptorflow import __version__
from raptorflow.config import (
    Registration,
    Settings,
    SettingsError,
    load_settings,
    served_url,
)
from raptorflow.kit import migrations
from raptorflow.kit.db import create_engine, session_factory, utcnow
from raptorflow.kit.errors import RaptorFlowError
from raptorflow.kit.logging import configure_logging, get_logger

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

# Command modules import what they need when they run: `raptorflow version` or `migrate` should not
# pay for Celery, Razorpay, STIX and the whole service layer (seconds per process, in every script
# and in the tests that run the CLI as a subprocess).
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
    import uvicorn

    from raptorflow.console.setup import issue_setup_token

    settings = settings_or_exit()
    # Links (setup, invitations, TAXII) name the address actually served unless RAPTORFLOW_PUBLIC_URL
    # says otherwise; the worker processes uvicorn starts read it from the environment they inherit.
    os.environ["RAPTORFLOW_SERVED_URL"] = served_url(host, port)
    settings = settings.model_copy(update={"served_url": os.environ["RAPTORFLOW_SERVED_URL"]})
    configure_logging(fmt=settings.effective_log_format.value, level=settings.log_level)
    prepare_database(settings)
    setup_token = in_transaction(settings, issue_setup_token)
    if setup_token:
        # First run: no account exists yet, so print the one-time link that creates the first owner.
        link = f"{settings.link_base}/setup?token={setup_token}"
        typer.echo(f"First run: open {link} (valid 24 h, once)")
    get_logger("raptorflow").info("serve.start", url=f"http://{host}:{port}", workers=workers)
    uvicorn.run(
        "raptorflow.app:app_from_env",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        access_log=False,
        log_level="warning",
        log_config=None,  # uvicorn's records go through configure_logging's handler, as JSON lines
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
plan_app = typer.Typer(help="Billing plans (prices and limits).", no_args_is_help=True)
billing_app = typer.Typer(help="Billing operations.", no_args_is_help=True)
ledger_app = typer.Typer(help="The double-entry ledger.", no_args_is_help=True)
app.add_typer(plan_app, name="plan")
app.add_typer(billing_app, name="billing")
app.add_typer(ledger_app, name="ledger")

T = TypeVar("T")


def _cli_context() -> Any:
    """The audit context of commands run by an operator."""
    from raptorflow.audit.service import AuditContext

    return AuditContext(user_agent="raptorflow-cli")


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
    from raptorflow.auth.service import AuthService
    from raptorflow.auth.tokens import TokenIssuer
    from raptorflow.kit.ratelimit import Limiter, make_storage

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
        user = await service.register(email, password, name, _cli_context())
        return str(user.id)

    typer.echo(in_transaction(settings, work))


@org_app.command("create")
def org_create(
    name: Annotated[str, typer.Option(help="Organization name.")],
    slug: Annotated[str, typer.Option(help="Short unique id (lower-case letters, digits, dashes).")],
    owner: Annotated[str, typer.Option(help="Email of the existing user who will own it.")],
) -> None:
    """Create an organization owned by an existing user."""
    from raptorflow.accounts.schemas import OrganizationCreate
    from raptorflow.accounts.service import OrganizationService
    from raptorflow.auth.principal import Principal
    from raptorflow.auth.repository import IdentityRepository
    from raptorflow.auth.service import normalize_email

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
    from raptorflow.auth.tokens import rotate_keys

    settings = settings_or_exit()
    prepare_database(settings)

    async def work(session: AsyncSession) -> str:
        return (await rotate_keys(session, settings.secret_key)).kid

    typer.echo(in_transaction(settings, work))


@audit_app.command("verify")
def audit_verify() -> None:
    """Recompute every organization's audit hash chain; exit 1 on the first break."""
    from raptorflow.audit import service as audit

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
        list[Path] | None,
        typer.Option(
            "--file", help="A STIX bundle, .json or .json.gz (gzip detected by content); repeat for more."
        ),
    ] = None,
    url: Annotated[
        list[str] | None,
        typer.Option("--url", help="Download a bundle from this http(s) URL; repeat for more."),
    ] = None,
) -> None:
    """Load or refresh ATT&CK domains (enterprise, mobile, ICS) from STIX 2.0/2.1 bundles (idempotent)."""
    from raptorflow.intel.attack import loader as attack_loader
    from raptorflow.intel.attack import service as attack_service

    sources: list[Path | str] = [*(file or []), *(url or [])]
    if not sources:
        fail("pass --file PATH or --url URL, once per bundle (e.g. --file enterprise-attack.json.gz)")
    settings = settings_or_exit()
    started = time.perf_counter()
    # Read and parse every bundle before touching the database: a bad file or URL changes nothing.
    bundles: list[attack_loader.ParsedBundle] = []
    try:
        for source in sources:
            data = (
                attack_loader.read_file(source)
                if isinstance(source, Path)
                else attack_loader.fetch_url(source)
            )
            bundles.append(attack_loader.parse_bundle(data))
            del data  # the raw bundle (tens of MB) is not needed once parsed
    except RaptorFlowError as exc:
        fail(exc.detail, 1)
    domains = [bundle.domain for bundle in bundles]
    if len(set(domains)) < len(domains):
        # The second would hide what the first loaded as "no longer in the bundle".
        fail(f"two bundles of one domain: {', '.join(domains)}; pass one bundle per domain", 1)
    prepare_database(settings)

    async def work(session: AsyncSession) -> list[attack_service.SyncSummary]:
        return [await attack_service.sync_bundle(session, bundle) for bundle in bundles]

    for summary in in_transaction(settings, work):
        typer.echo(summary.line())
    typer.echo(f"loaded in {time.perf_counter() - started:.1f}s", err=True)


def _limit(value: str | None) -> int | None:
    """'unlimited' → None; a number → int (paise or a count)."""
    if value is None or value.lower() in ("unlimited", "none", "custom"):
        return None
    try:
        return int(value.replace(",", "").replace("_", ""))
    except ValueError:
        fail(f"expected a whole number or 'unlimited', got {value!r}")


@plan_app.command("list")
def plan_list() -> None:
    """Print every plan with its price and limits."""
    from raptorflow.billing import repository as billing_sql

    settings = settings_or_exit()
    prepare_database(settings)

    def show(v: int | None) -> str:
        return "unlimited" if v is None else f"{v:,}"

    for p in in_transaction(settings, billing_sql.plans):
        price = "custom" if p.price_paise is None else f"{p.price_paise} paise"
        typer.echo(
            f"{p.code:<12} {p.name:<12} {price:<14} {show(p.requests_per_minute)}/min "
            f"{show(p.requests_per_month)}/month members {show(p.max_members)} "
            f"indicators {show(p.max_indicators)} feeds {'yes' if p.feeds else 'no'} "
            f"taxii-write {'yes' if p.taxii_write else 'no'}"
        )


@plan_app.command("set")
def plan_set(
    code: Annotated[str, typer.Argument(help="plan code, e.g. pro")],
    name: Annotated[str | None, typer.Option()] = None,
    price_paise: Annotated[str | None, typer.Option(help="integer paise, or 'custom'")] = None,
    requests_per_minute: Annotated[str | None, typer.Option(help="number or 'unlimited'")] = None,
    requests_per_month: Annotated[str | None, typer.Option(help="number or 'unlimited'")] = None,
    members: Annotated[str | None, typer.Option(help="number or 'unlimited'")] = None,
    indicators: Annotated[str | None, typer.Option(help="number or 'unlimited'")] = None,
    feeds: Annotated[bool | None, typer.Option("--feeds/--no-feeds")] = None,
    taxii_write: Annotated[bool | None, typer.Option("--taxii-write/--no-taxii-write")] = None,
    rank: Annotated[int | None, typer.Option(help="order of plans, cheapest first")] = None,
) -> None:
    """Create or change a plan; only the options given change."""
    from raptorflow.billing import plans as billing_plans

    settings = settings_or_exit()
    prepare_database(settings)
    changes: dict[str, object] = {}
    for key, raw in (
        ("price_paise", price_paise),
        ("requests_per_minute", requests_per_minute),
        ("requests_per_month", requests_per_month),
        ("max_members", members),
        ("max_indicators", indicators),
    ):
        if raw is not None:
            changes[key] = _limit(raw)
    for key, value in (("name", name), ("feeds", feeds), ("taxii_write", taxii_write), ("rank", rank)):
        if value is not None:
            changes[key] = value
    if not changes:
        fail("nothing to change: give at least one option")

    async def work(session: AsyncSession) -> str:
        try:
            found = await billing_plans.set_plan(session, code, changes)
        except ValueError as exc:
            fail(str(exc))
        return f"plan {found.code} saved"

    typer.echo(in_transaction(settings, work))


@billing_app.command("reconcile")
def billing_reconcile(
    days: Annotated[int, typer.Option(min=1, max=90, help="look back this many days")] = 3,
) -> None:
    """Fetch recent orders and payments from Razorpay and apply what webhooks missed."""
    from raptorflow.billing import operations as billing_ops
    from raptorflow.billing.mode import BillingConfig

    settings = settings_or_exit()
    prepare_database(settings)
    config = BillingConfig.from_settings(settings)

    async def work(session: AsyncSession) -> list[str]:
        billing_ops.use_config(session, config)
        return await billing_ops.reconcile(session, config, days, billing_ops.utcnow())

    for line in in_transaction(settings, work):
        typer.echo(line)


@billing_app.command("renew")
def billing_renew() -> None:
    """Renew or downgrade every subscription whose period or grace has ended (the hourly job, now)."""
    from raptorflow.billing import operations as billing_ops
    from raptorflow.billing.mode import BillingConfig

    settings = settings_or_exit()
    prepare_database(settings)
    config = BillingConfig.from_settings(settings)

    async def work(session: AsyncSession) -> list[str]:
        billing_ops.use_config(session, config)
        return await billing_ops.renew_due(session, billing_ops.utcnow())

    for line in in_transaction(settings, work):
        typer.echo(line)


@billing_app.command("trial")
def billing_trial(
    org: Annotated[str, typer.Option(help="organization id")],
    plan: Annotated[str, typer.Option(help="plan code")] = "pro",
    days: Annotated[int, typer.Option(min=1, max=90)] = 14,
) -> None:
    """Put a Free organization on a plan's trial (trialing; unpaid at its end → past_due, then Free)."""
    from raptorflow.billing import operations as billing_ops
    from raptorflow.billing.mode import BillingConfig

    settings = settings_or_exit()
    prepare_database(settings)
    config = BillingConfig.from_settings(settings)
    try:
        org_id = uuid.UUID(org)
    except ValueError:
        fail("--org must be an organization id (UUID)")

    async def work(session: AsyncSession) -> str:
        billing_ops.use_config(session, config)
        sub = await billing_ops.BillingService(session, org_id, _cli_context()).start_trial(plan, days)
        assert sub.current_period_end is not None
        return f"{org_id} trialing {plan} until {sub.current_period_end.isoformat()}"

    typer.echo(in_transaction(settings, work))


@ledger_app.command("check")
def ledger_check() -> None:
    """Verify every ledger invariant over the whole ledger; exit 1 on any violation."""
    from raptorflow.billing import ledger as billing_ledger

    settings = settings_or_exit()
    prepare_database(settings)
    problems = in_transaction(settings, billing_ledger.check)
    for problem in problems:
        typer.echo(problem)
    if problems:
        raise typer.Exit(1)
    typer.echo("ledger ok", err=True)


@app.command()
def worker(
    beat: Annotated[bool, typer.Option("--beat", help="Also run periodic tasks (one per site).")] = False,
    concurrency: Annotated[int, typer.Option(min=1, max=256, help="Job processes.")] = 2,
    loglevel: Annotated[str, typer.Option(help="Celery log level.")] = "WARNING",
) -> None:
    """Run a Celery worker for background jobs (needs RAPTORFLOW_BROKER_URL)."""
    from raptorflow.jobs import worker as job_worker

    settings = settings_or_exit()
    if not settings.broker_url:
        fail("RAPTORFLOW_BROKER_URL is not set; without a broker jobs run inside `raptorflow serve`")
    configure_logging(fmt=settings.effective_log_format.value, level=settings.log_level)
    prepare_database(settings)
    celery = job_worker.create_celery(settings)
    argv = ["worker", f"--concurrency={concurrency}", f"--loglevel={loglevel}", "--pool=prefork"]
    if beat:
        argv.append("--beat")
        # beat keeps its schedule state in a file; keep it out of the working directory.
        argv.append(f"--schedule={settings_state_dir(settings) / 'celerybeat-schedule'}")
    get_logger("raptorflow").info("worker.start", concurrency=concurrency, beat=beat)
    celery.worker_main(argv)


def settings_state_dir(settings: Settings) -> Path:
    """A folder for process state files (next to the SQLite file, or ./var)."""
    sqlite = settings.sqlite_path()
    folder = sqlite.parent if sqlite is not None else Path("var")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@app.command()
def backup(
    target: Annotated[Path, typer.Argument(help="File to write (SQLite copy, or pg_dump custom format).")],
) -> None:
    """Back up the database while it serves (SQLite online backup; pg_dump for PostgreSQL)."""
    from raptorflow.kit import backup as platform_backup

    settings = settings_or_exit()
    try:
        written = platform_backup.backup(settings.database_url, target)
    except platform_backup.BackupError as exc:
        fail(str(exc), 1)
    typer.echo(f"backup written to {written}", err=True)


@app.command()
def restore(
    source: Annotated[Path, typer.Argument(help="A file written by `raptorflow backup`.")],
    yes: Annotated[bool, typer.Option("--yes", help="Confirm overwriting the configured database.")] = False,
) -> None:
    """Restore a backup into the configured database (use a fresh database; then `raptorflow migrate`)."""
    from raptorflow.kit import backup as platform_backup

    if not yes:
        fail("restore overwrites the configured database; run again with --yes to confirm")
    settings = settings_or_exit()
    try:
        platform_backup.restore(settings.database_url, source)
    except platform_backup.BackupError as exc:
        fail(str(exc), 1)
    typer.echo(f"restored {source}", err=True)


@app.command("import")
def import_command(
    file: Annotated[
        Path,
        typer.Argument(help="STIX bundle, MISP event JSON, CSV or text list", exists=True, dir_okay=False),
    ],
    org: Annotated[str, typer.Option("--org", help="the organization's slug")],
    fmt: Annotated[
        str | None,
        typer.Option("--format", help="stix, misp, csv or text (guessed from the file when left out)"),
    ] = None,
    project: Annotated[str | None, typer.Option("--project", help="project id or name")] = None,
    tag: Annotated[list[str] | None, typer.Option("--tag", help="tag every indicator (repeatable)")] = None,
    tlp: Annotated[str | None, typer.Option("--tlp", help="clear, green, amber, amber+strict, red")] = None,
    confidence: Annotated[int | None, typer.Option("--confidence", min=0, max=100)] = None,
    source: Annotated[str | None, typer.Option("--source")] = None,
    preset: Annotated[
        str | None,
        typer.Option(
            "--preset",
            help="a published CSV layout: urlhaus, threatfox or feodo (else recognized from the header)",
        ),
    ] = None,
    column: Annotated[
        list[str] | None,
        typer.Option(
            "--column",
            help="CSV column of a field as FIELD=COLUMN (header name or 0-based index); fields: value, type, "
            "tags, description, confidence, score, first_seen, last_seen (repeatable)",
        ),
    ] = None,
    delimiter: Annotated[str | None, typer.Option("--delimiter", help="CSV delimiter (default ,)")] = None,
) -> None:
    """Import indicators into an org with a progress bar (set-based; COPY + merge on PostgreSQL)."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

    from raptorflow.sharing.imports import operator as import_operator
    from raptorflow.sharing.imports import schemas as import_schemas

    if fmt is not None and fmt not in import_schemas.FORMATS:
        fail(f"--format must be one of {', '.join(import_schemas.FORMATS)}")
    csv: dict[str, object] = {}
    for spec in column or []:
        field, sep, name = spec.partition("=")
        if not sep or not name.strip():
            fail(f"--column {spec!r}: give FIELD=COLUMN, e.g. value=url")
        csv[f"{field.strip()}_column"] = int(name) if name.strip().isdigit() else name.strip()
    if delimiter is not None:
        csv["delimiter"] = delimiter
    try:
        options = import_schemas.ImportOptions.model_validate(
            {
                "tags": tag or [],
                "tlp": tlp,
                "confidence": confidence,
                "source": source,
                "preset": preset,
                "csv": csv or None,
            }
        )
    except ValidationError as exc:
        where = ".".join(str(p) for p in exc.errors()[0]["loc"])
        fail(f"invalid option: {where}: {exc.errors()[0]['msg']}")
    settings = settings_or_exit()
    prepare_database(settings)

    async def runner() -> dict[str, object]:
        engine = create_engine(settings.database_url)
        try:
            with Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                DownloadColumn(),
                TextColumn("{task.fields[counts]}"),
                TimeRemainingColumn(),
                transient=False,
            ) as bar:
                task_id = bar.add_task(file.name, total=None, counts="")

                def progress(done: int, total: int, counts: dict[str, object]) -> None:
                    line = " ".join(
                        f"{k} {counts.get(k, 0)}" for k in ("processed", "created", "merged", "rejected")
                    )
                    bar.update(task_id, completed=done, total=total or None, counts=line)

                return await import_operator.import_file(
                    session_factory(engine), settings, org, file, fmt, options, project, progress
                )
        finally:
            await engine.dispose()

    try:
        out = asyncio.run(runner())
    except RaptorFlowError as exc:
        fail(exc.detail, 1)
    typer.echo(
        f"{out['status']}: {out['processed']} processed, {out['created']} created, {out['merged']} merged, "
        f"{out['rejected']} rejected (import {out['id']})"
    )
    for rejection in out["rejections"][:10]:  # type: ignore[index]
        typer.echo(f"  line {rejection['line']}: {rejection['value']!r}: {rejection['reason']}", err=True)
    if out["status"] != "succeeded":
        fail(str(out.get("error") or out["status"]), 1)


@app.command("export")
def export_command(
    org: Annotated[str, typer.Option("--org", help="the organization's slug")],
    fmt: Annotated[str, typer.Option("--format", help="csv, txt, stix, misp, suricata or snort")] = "csv",
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="file to write (default: stdout)")
    ] = None,
    type_: Annotated[str | None, typer.Option("--type", help="indicator type")] = None,
    min_score: Annotated[int | None, typer.Option("--min-score", min=0, max=100)] = None,
    tag: Annotated[str | None, typer.Option("--tag")] = None,
    project: Annotated[str | None, typer.Option("--project", help="project id or name")] = None,
    tlp: Annotated[str | None, typer.Option("--tlp")] = None,
) -> None:
    """Export an org's indicators (same formats and filters as GET /api/v1/exports/indicators.*), streamed."""
    from raptorflow.sharing.exports import service as export_service
    from raptorflow.sharing.imports import operator as import_operator

    if fmt not in export_service.FORMATS:
        fail(f"--format must be one of {', '.join(export_service.FORMATS)}")
    settings = settings_or_exit()
    prepare_database(settings)

    async def runner() -> None:
        engine = create_engine(settings.database_url)
        factory = session_factory(engine)
        try:
            async with factory() as session:
                org_id = await import_operator.org_by_slug(session, org)
                project_id = (
                    await import_operator.project_by_ref(session, org_id, project) if project else None
                )
                name = await export_service.org_name(session, org_id)
            filters = {
                "type": type_,
                "min_score": min_score,
                "tag": tag.strip().lower() if tag else None,
                "project_id": project_id,
                "tlp": tlp,
                "archived": False,
            }
            sink = output.open("wb") if output is not None else sys.stdout.buffer
            try:
                async for chunk in export_service.stream_for(
                    fmt, factory, org_id, filters, org=name, now=utcnow()
                ):
                    sink.write(chunk)
            finally:
                if output is not None:
                    sink.close()
                else:
                    sink.flush()
        finally:
            await engine.dispose()

    try:
        asyncio.run(runner())
    except RaptorFlowError as exc:
        fail(exc.detail, 1)


@app.command()
def version() -> None:
    """Print the version."""
    typer.echo(__version__)


def main() -> None:
    """Entry point for `python -m raptorflow`."""
    app()


if __name__ == "__main__":
    main()
