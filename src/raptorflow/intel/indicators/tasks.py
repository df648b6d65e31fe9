"""Indicator maintenance: record each expiry (valid_until passed) once, with an event, per org.

Reads keep deciding "expired" from `valid_until` (lookups and lists are unchanged); `expired_at` marks
the transition so that it is announced once (`indicator.expired` webhooks) and counted.
"""

from __future__ import annotations

from typing import Any

from raptorflow.intel.indicators.repository import MaintenanceRepository
from raptorflow.jobs.service import enqueue
from raptorflow.kit.db import utcnow
from raptorflow.kit.jobs import JobContext, task
from raptorflow.kit.tenancy import cross_tenant
from raptorflow.webhooks.service import emit_many

SCHEDULE_TASK = "intel.maintenance"
MAINTAIN_TASK = "intel.maintain"
EXPIRED_EVENT = "indicator.expired"
# Newly expired indicators recorded per job (one transaction, one event each); a full batch queues
# the next job at once, so a million indicators expiring together become bounded transactions.
EXPIRY_BATCH = 5000


@task(SCHEDULE_TASK, periodic_s=3600)
async def schedule_maintenance(ctx: JobContext, payload: dict[str, Any]) -> dict[str, Any]:
    """Queue one `intel.maintain` job per org that has expiries to record or to undo (none pending)."""
    now = utcnow()
    async with ctx.transaction() as session, cross_tenant(session):
        org_ids = await MaintenanceRepository(session).orgs_due(now, MAINTAIN_TASK)
        for org_id in org_ids:
            await enqueue(session, org_id, MAINTAIN_TASK, {})
    return {"queued": len(org_ids)}


@task(MAINTAIN_TASK)
async def maintain(ctx: JobContext, payload: dict[str, Any]) -> dict[str, Any]:
    """Record the org's newly expired indicators (one event each) and un-record extended ones."""
    assert ctx.org_id is not None, "maintenance runs for one org"
    org_id = ctx.org_id
    now = utcnow()
    async with ctx.transaction() as session:
        repository = MaintenanceRepository(session)
        expired = await repository.record_expired(org_id, now, EXPIRY_BATCH)
        unexpired = await repository.clear_extended(org_id, now)
        events = await emit_many(
            session,
            org_id,
            EXPIRED_EVENT,
            [
                {
                    "id": str(row.id),
                    "type": row.type,
                    "value": row.value,
                    "score": row.score,
                    "valid_until": row.valid_until.isoformat().replace("+00:00", "Z"),
                }
                for row in expired
            ],
        )
        more = len(expired) == EXPIRY_BATCH
        if more:
            await enqueue(session, org_id, MAINTAIN_TASK, {})
    return {
        "expired": len(expired),
        "unexpired": unexpired,
        "events": events,
        "more": more,
    }
