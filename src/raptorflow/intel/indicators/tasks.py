"""Indicator maintenance: record each expiry (valid_until passed) once, with an event, per org.

Reads keep deciding "expired" from `valid_until` (lookups and lists are unchanged); `expired_at` marks
the transition so that it is announced once (`indicator.expired` webhooks) and counted.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import or_, select, update

from raptorflow.jobs.service import enqueue
from raptorflow.kit.db import utcnow
from raptorflow.kit.jobs import JobContext, task
from raptorflow.kit.tenancy import cross_tenant
from raptorflow.models import Indicator, Job, Organization
from raptorflow.webhooks.service import emit_many

SCHEDULE_TASK = "intel.maintenance"
MAINTAIN_TASK = "intel.maintain"
EXPIRED_EVENT = "indicator.expired"
# Newly expired indicators recorded per job (one transaction, one event each); a full batch queues
# the next job at once, so a million indicators expiring together become bounded transactions.
EXPIRY_BATCH = 5000


def _due(now: Any) -> Any:
    """Indicators past valid_until whose expiry is not recorded (index ix_indicators_expiry_due)."""
    return (Indicator.expired_at.is_(None), Indicator.valid_until.is_not(None), Indicator.valid_until <= now)


def _extended(now: Any) -> Any:
    """Indicators recorded as expired whose validity was extended or cleared (ix_indicators_expired)."""
    return (
        Indicator.expired_at.is_not(None),
        or_(Indicator.valid_until.is_(None), Indicator.valid_until > now),
    )


def _probe(order: Any, *conditions: Any) -> Any:
    """True when the org of the outer query has an indicator matching `conditions`."""
    first = (
        select(Indicator.id)
        .where(Indicator.org_id == Organization.id, *conditions)
        .order_by(order)
        .limit(1)
        .correlate(Organization)
        .scalar_subquery()
    )
    return first.is_not(None)


@task(SCHEDULE_TASK, periodic_s=3600)
async def schedule_maintenance(ctx: JobContext, payload: dict[str, Any]) -> dict[str, Any]:
    """Queue one `intel.maintain` job per org that has expiries to record or to undo (none pending)."""
    now = utcnow()
    async with ctx.transaction() as session, cross_tenant(session):
        pending = select(Job.org_id).where(Job.status.in_(("queued", "running")), Job.kind == MAINTAIN_TASK)
        # Each probe is the first entry of an index range (ORDER BY the indexed column, LIMIT 1):
        # EXISTS alone let the planner pick a sequential scan of a million-row org (measured).
        due = _probe(Indicator.valid_until.asc(), *_due(now))
        extended = _probe(
            Indicator.valid_until.desc(), Indicator.expired_at.is_not(None), Indicator.valid_until > now
        )
        cleared = _probe(
            Indicator.valid_until.asc(), Indicator.expired_at.is_not(None), Indicator.valid_until.is_(None)
        )
        org_ids = (
            await session.scalars(
                select(Organization.id).where(
                    Organization.deleted_at.is_(None),
                    Organization.id.not_in(pending),
                    or_(due, extended, cleared),
                )
            )
        ).all()
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
        batch = (
            select(Indicator.id)
            .where(Indicator.org_id == org_id, *_due(now))
            .order_by(Indicator.valid_until)
            .limit(EXPIRY_BATCH)
            .scalar_subquery()
        )
        # The state predicate is repeated on the row itself: a concurrent run records nothing twice.
        expired = (
            await session.execute(
                update(Indicator)
                .where(Indicator.org_id == org_id, Indicator.id.in_(batch), *_due(now))
                .values(expired_at=Indicator.valid_until)
                .returning(
                    Indicator.id, Indicator.type, Indicator.value, Indicator.score, Indicator.valid_until
                )
                .execution_options(synchronize_session=False)
            )
        ).all()
        extended = await session.execute(
            update(Indicator)
            .where(Indicator.org_id == org_id, *_extended(now))
            .values(expired_at=None)
            .execution_options(synchronize_session=False)
        )
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
        "unexpired": int(extended.rowcount or 0),  # type: ignore[attr-defined]
        "events": events,
        "more": more,
    }
