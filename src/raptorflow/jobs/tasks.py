"""Platform system tasks: re-send jobs whose dispatch was lost, re-queue jobs whose worker died, and
delete finished jobs past their retention."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, or_, select, update

from raptorflow.kit.db import utcnow
from raptorflow.kit.jobs import Dispatcher, JobContext, task
from raptorflow.kit.tenancy import cross_tenant
from raptorflow.models import Job

SWEEP_BATCH = 500
# A queued job this old was committed but its dispatch message was lost (broker down, process exit).
LOST_AFTER = timedelta(seconds=30)
# A running job that has not reported progress for this long lost its worker.
STALE_AFTER = timedelta(minutes=30)


@task("jobs.dispatch_due", periodic_s=30)
async def dispatch_due(ctx: JobContext, payload: dict[str, Any]) -> dict[str, Any]:
    """Send again queued jobs that are due and were never picked up; re-queue abandoned running jobs."""
    dispatcher: Dispatcher | None = ctx.extras.get("dispatcher")
    now = utcnow()
    async with ctx.transaction() as session, cross_tenant(session):
        stale = await session.execute(
            update(Job)
            .where(Job.status == "running", Job.updated_at < now - STALE_AFTER)
            # Due at once (past the lost-dispatch grace), so this same sweep sends it again.
            .values(
                status="queued",
                run_after=now - LOST_AFTER,
                last_error="worker lost; re-queued",
                updated_at=now,
            )
            .execution_options(synchronize_session=False)
        )
        due = (
            await session.execute(
                select(Job.id, Job.org_id)
                .where(
                    Job.status == "queued",
                    or_(
                        Job.run_after <= now - LOST_AFTER,
                        (Job.run_after.is_(None)) & (Job.created_at <= now - LOST_AFTER),
                    ),
                )
                .order_by(Job.id)
                .limit(SWEEP_BATCH)
            )
        ).all()
    if dispatcher is not None:
        for job_id, org_id in due:
            dispatcher.dispatch(job_id, org_id)
    return {"dispatched": len(due) if dispatcher else 0, "requeued": stale.rowcount or 0}  # type: ignore[attr-defined]


# Finished jobs stay visible this long in GET /api/v1/jobs, then they are deleted.
RETENTION = timedelta(days=30)
PURGE_BATCH = 5000
FINISHED = ("succeeded", "failed", "cancelled")


def id_before(moment: datetime) -> uuid.UUID:
    """The smallest time-ordered (v7) id of `moment`: every id made earlier sorts below it."""
    return uuid.UUID(int=(int(moment.timestamp() * 1000) & 0xFFFF_FFFF_FFFF) << 80)


@task("jobs.purge_finished", periodic_s=3600)
async def purge_finished(ctx: JobContext, payload: dict[str, Any]) -> dict[str, Any]:
    """Delete finished jobs older than the retention (a primary-key range, so cheap at any size)."""
    edge = id_before(utcnow() - RETENTION)
    purged = 0
    while True:
        async with ctx.transaction() as session, cross_tenant(session):
            batch = (
                select(Job.id)
                .where(Job.id < edge, Job.status.in_(FINISHED))
                .order_by(Job.id)
                .limit(PURGE_BATCH)
                .scalar_subquery()
            )
            result = await session.execute(
                delete(Job).where(Job.id.in_(batch)).execution_options(synchronize_session=False)
            )
        count = int(result.rowcount or 0)  # type: ignore[attr-defined]
        purged += count
        if count < PURGE_BATCH:
            return {"purged": purged}
