"""Background jobs of feeds."""

from __future__ import annotations

import uuid
from typing import Any

from raptorflow.kit.db import utcnow
from raptorflow.kit.jobs import JobContext, task
from raptorflow.kit.tenancy import cross_tenant
from raptorflow.sharing.feeds.service import TASK, pull, queue_due


@task(TASK)
async def pull_feed(ctx: JobContext, payload: dict[str, Any]) -> dict[str, Any]:
    """Pull one feed (TAXII, MISP, CSV or text) into its org."""
    return await pull(ctx, uuid.UUID(str(payload["feed_id"])), uuid.UUID(str(payload["import_id"])))


@task("feeds.schedule_due", periodic_s=60)
async def schedule_due(ctx: JobContext, payload: dict[str, Any]) -> dict[str, Any]:
    """Queue the pulls of scheduled feeds whose period has passed (every org; run by beat or in-process)."""
    async with ctx.transaction() as session, cross_tenant(session):
        queued = await queue_due(session, utcnow())
    return {"queued": queued}
