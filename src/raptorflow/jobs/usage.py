"""Monthly request usage per org: the database side of kit.ratelimit.UsageMeter, and its flush task.

`requests_this_month(app_or_session, org_id)` is what billing's usage endpoint reads.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from raptorflow.auth.deps import PublicRoute
from raptorflow.jobs.observability import scrape_hooks
from raptorflow.kit.cache import create_redis
from raptorflow.kit.db import dialect_name, utcnow
from raptorflow.kit.jobs import JobContext, task
from raptorflow.kit.metrics import metrics_router
from raptorflow.kit.ratelimit import (
    Limiter,
    OrgLimits,
    RedisWindowLimiter,
    RefusedRequestLimits,
    RequestLimits,
    UsageLoader,
    UsageMeter,
    make_storage,
    month_of,
)
from raptorflow.kit.tenancy import bind_org, cross_tenant
from raptorflow.models import Organization, UsageCounter

FLUSH_TASK = "platform.usage_flush"


async def stored_usage(session: AsyncSession, org_id: uuid.UUID, month: str) -> int:
    """The flushed count of an org for a month (0 when none)."""
    await bind_org(session, org_id)
    value = await session.scalar(
        select(UsageCounter.requests).where(UsageCounter.org_id == org_id, UsageCounter.month == month)
    )
    return int(value or 0)


def usage_loader(factory: async_sessionmaker[AsyncSession]) -> UsageLoader:
    """Reads an org's flushed count in its own short transaction (the meter's baseline)."""

    async def load(org_id: uuid.UUID, month: str) -> int:
        async with factory() as session:
            return await stored_usage(session, org_id, month)

    return load


async def requests_this_month(app_or_session: Any, org_id: uuid.UUID) -> int:
    """Requests the org made this UTC month.

    Given the app: the live count (Redis shared by every process, or this process without Redis).
    Given a database session: the count last flushed to `usage_counters` (at most a minute old).
    """
    now = datetime.now(UTC)
    if isinstance(app_or_session, AsyncSession):
        return await stored_usage(app_or_session, org_id, month_of(now))
    meter: UsageMeter = app_or_session.state.usage_meter
    return await meter.current(org_id, now)


async def write_usage(session: AsyncSession, month: str, totals: dict[uuid.UUID, int]) -> int:
    """Upsert totals, never lowering a stored count (a restarted Redis may briefly know less).

    Orgs that no longer exist are skipped: Redis keeps a purged org's count until the month's keys
    expire, and one row failing its foreign key would abort every org's flush with it.
    """
    if not totals:
        return 0
    existing = set(
        (await session.execute(select(Organization.id).where(Organization.id.in_(list(totals))))).scalars()
    )
    now = utcnow()
    rows = [
        {"org_id": o, "month": month, "requests": n, "updated_at": now}
        for o, n in totals.items()
        if o in existing
    ]
    if not rows:
        return 0
    if dialect_name(session) == "postgresql":
        pg = pg_insert(UsageCounter).values(rows)
        stmt: Any = pg.on_conflict_do_update(
            index_elements=["org_id", "month"],
            set_={
                "requests": func.greatest(UsageCounter.requests, pg.excluded.requests),
                "updated_at": pg.excluded.updated_at,
            },
        )
    else:
        lite = sqlite_insert(UsageCounter).values(rows)
        stmt = lite.on_conflict_do_update(
            index_elements=["org_id", "month"],
            set_={
                "requests": func.max(UsageCounter.requests, lite.excluded.requests),
                "updated_at": lite.excluded.updated_at,
            },
        )
    await session.execute(stmt)
    return len(rows)


@task(FLUSH_TASK, periodic_s=30)
async def flush_usage(ctx: JobContext, payload: dict[str, Any]) -> dict[str, Any]:
    """Write every org's monthly count to the database (this month, and last month near a rollover)."""
    meter: UsageMeter | None = ctx.extras.get("meter")
    redis = None
    if meter is None:
        if not ctx.settings.redis_url:
            return {"flushed": 0}  # no Redis and not the API process: nothing is counted here
        redis = create_redis(ctx.settings.redis_url, timeout_ms=max(1000, ctx.settings.redis_timeout_ms))
        meter = UsageMeter(redis, usage_loader(ctx.session_factory))
    now = utcnow()
    months = {month_of(now), month_of(now - timedelta(minutes=5))}
    flushed = 0
    try:
        for month in sorted(months):
            totals = await meter.snapshot(month)
            async with ctx.transaction() as session, cross_tenant(session):
                flushed += await write_usage(session, month, totals)
    finally:
        if redis is not None:
            await redis.aclose()
    return {"flushed": flushed}


def install_platform(app: Any) -> None:
    """Rate limits and the monthly meter on app.state (`app.state.org_limits` is the pluggable hook),
    and the /metrics route with its scrape-time gauges."""
    settings = app.state.settings
    app.state.usage_meter = UsageMeter(app.state.redis, usage_loader(app.state.session_factory))
    default = OrgLimits(settings.rate_limit_per_minute, None)

    async def default_org_limits(org_id: uuid.UUID) -> OrgLimits:
        return default

    app.state.org_limits = default_org_limits
    app.state.metrics_hooks = scrape_hooks(app)
    app.include_router(metrics_router(PublicRoute))
    # With Redis, the credential's and the org's windows are checked in one round trip, or none while
    # both are far from their limits (counted here, added in Redis every rate_limit_sync_ms).
    request_limiter = (
        RedisWindowLimiter(app.state.redis, sync_s=settings.rate_limit_sync_ms / 1000)
        if app.state.redis is not None
        else Limiter(make_storage(None), sliding_counter=True)
    )
    app.state.request_limits = RequestLimits(
        request_limiter,
        app.state.usage_meter,
        default_per_minute=settings.rate_limit_per_minute,
        principal_per_minute=settings.rate_limit_principal_per_minute,
        anonymous_per_minute=settings.rate_limit_anonymous_per_minute,
        hooks=app.state,
    )
    # Innermost of the middleware (installed before the HTTP stack): refusals made before any limit
    # was checked (401, unknown org, unknown path) are counted and carry the X-RateLimit-* headers.
    app.add_middleware(RefusedRequestLimits)
