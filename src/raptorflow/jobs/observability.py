"""Scrape-time gauges read from the database: job queue depth, pool use, indicators per org."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import func, select

from raptorflow.kit.metrics import DB_POOL_IN_USE, INDICATORS, JOB_QUEUE_DEPTH, ScrapeHook
from raptorflow.kit.tenancy import cross_tenant
from raptorflow.models import Indicator, Job

# Counting every org's indicators scans the table: refreshed at most this often, not per scrape.
INDICATOR_COUNT_EVERY_S = 300.0


def scrape_hooks(app: Any) -> list[ScrapeHook]:
    """The hooks /metrics runs before rendering."""
    last_indicator_count = [0.0]

    async def pool() -> None:
        checked_out = getattr(app.state.engine.pool, "checkedout", None)
        DB_POOL_IN_USE.set(checked_out() if callable(checked_out) else 0)

    async def database() -> None:
        async with app.state.session_factory() as session, cross_tenant(session):
            rows = await session.execute(
                select(Job.status, func.count())
                .where(Job.status.in_(("queued", "running")))
                .group_by(Job.status)
            )
            depth = {status: int(n) for status, n in rows.all()}
            for status in ("queued", "running"):
                JOB_QUEUE_DEPTH.labels(status).set(depth.get(status, 0))
            if time.monotonic() - last_indicator_count[0] >= INDICATOR_COUNT_EVERY_S:
                last_indicator_count[0] = time.monotonic()
                counts = await session.execute(
                    select(Indicator.org_id, func.count()).group_by(Indicator.org_id)
                )
                INDICATORS.clear()
                for org_id, n in counts.all():
                    INDICATORS.labels(str(org_id)).set(int(n))
            await session.rollback()

    return [pool, database]
