"""Webhook jobs: deliver queued events; periodically hand due retries to new delivery jobs."""

from __future__ import annotations

import uuid
from collections import defaultdict
from datetime import timedelta
from typing import Any

from sqlalchemy import select, update

from raptorflow.jobs.service import enqueue
from raptorflow.kit.db import utcnow
from raptorflow.kit.jobs import JobContext, task
from raptorflow.kit.tenancy import cross_tenant
from raptorflow.models import WebhookDelivery
from raptorflow.webhooks.service import DELIVER_TASK, deliver

RETRY_BATCH = 1000
# A retry handed to a job is not handed out again for this long (the job records its own outcome).
LEASE = timedelta(minutes=10)


@task(DELIVER_TASK)
async def deliver_task(ctx: JobContext, payload: dict[str, Any]) -> dict[str, Any]:
    """Send the listed pending deliveries of the job's org once each."""
    assert ctx.org_id is not None, "deliveries belong to an org"
    ids = [uuid.UUID(str(i)) for i in payload.get("delivery_ids", [])]
    return await deliver(ctx.session_factory, ctx.org_id, ctx.settings, ids)


@task("webhooks.retry_due", periodic_s=30)
async def retry_due(ctx: JobContext, payload: dict[str, Any]) -> dict[str, Any]:
    """Group pending deliveries whose retry time has come by org, and queue one delivery job per org."""
    now = utcnow()
    async with ctx.transaction() as session, cross_tenant(session):
        due = (
            await session.execute(
                select(WebhookDelivery.id, WebhookDelivery.org_id)
                .where(WebhookDelivery.status == "pending", WebhookDelivery.next_attempt_at <= now)
                .order_by(WebhookDelivery.next_attempt_at)
                .limit(RETRY_BATCH)
            )
        ).all()
        if not due:
            return {"queued": 0}
        await session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id.in_([d for d, _o in due]))
            .values(next_attempt_at=now + LEASE)
            .execution_options(synchronize_session=False)
        )
        by_org: dict[uuid.UUID, list[str]] = defaultdict(list)
        for delivery_id, org_id in due:
            by_org[org_id].append(str(delivery_id))
        for org_id, ids in by_org.items():
            await enqueue(session, org_id, DELIVER_TASK, {"delivery_ids": ids}, max_attempts=1)
    return {"queued": len(due), "orgs": len(by_org)}
