"""Running one attempt of a job: claim the row, call the handler, record the outcome."""

from __future__ import annotations

import traceback
import uuid
from datetime import timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from raptorflow.config import Settings
from raptorflow.kit.db import utcnow
from raptorflow.kit.jobs import JobContext, backoff_s, spec_for
from raptorflow.kit.logging import get_logger
from raptorflow.kit.metrics import JOBS
from raptorflow.kit.tenancy import bind_org
from raptorflow.models import Job

log = get_logger("raptorflow.jobs")
MAX_ERROR_CHARS = 4000


class SqlJobStore:
    """Progress and cancellation of job rows, each in its own short transaction."""

    def __init__(self, factory: async_sessionmaker[AsyncSession]) -> None:
        self.factory = factory

    async def set_progress(
        self, job_id: uuid.UUID, org_id: uuid.UUID, processed: int, total: int | None, counts: dict[str, int]
    ) -> None:
        """Store processed/total/counts of a running job."""
        async with self.factory() as session:
            await bind_org(session, org_id)
            await session.execute(
                update(Job)
                .where(Job.id == job_id, Job.org_id == org_id)
                .values(processed=processed, total=total, counts=counts, updated_at=utcnow())
            )
            await session.commit()

    async def cancel_requested(self, job_id: uuid.UUID, org_id: uuid.UUID) -> bool:
        """True when cancellation was asked for."""
        async with self.factory() as session:
            await bind_org(session, org_id)
            flag = await session.scalar(
                select(Job.cancel_requested).where(Job.id == job_id, Job.org_id == org_id)
            )
            await session.rollback()
        return bool(flag)


async def _claim(
    factory: async_sessionmaker[AsyncSession], job_id: uuid.UUID, org_id: uuid.UUID
) -> tuple[str, dict[str, Any], int, int] | None:
    """Move a due queued job to running in one UPDATE; None when another worker has it or it is done."""
    now = utcnow()
    async with factory() as session:
        await bind_org(session, org_id)
        claimed = await session.execute(
            update(Job)
            .where(
                Job.id == job_id,
                Job.org_id == org_id,
                Job.status == "queued",
                (Job.run_after.is_(None)) | (Job.run_after <= now + timedelta(seconds=1)),
            )
            .values(status="running", attempts=Job.attempts + 1, started_at=now, updated_at=now)
            .execution_options(synchronize_session=False)
        )
        if claimed.rowcount != 1:  # type: ignore[attr-defined]
            await session.rollback()
            return None
        row = (
            await session.execute(
                select(Job.kind, Job.payload, Job.attempts, Job.max_attempts).where(Job.id == job_id)
            )
        ).one()
        await session.commit()
    return row[0], dict(row[1] or {}), int(row[2]), int(row[3])


async def _finish(
    factory: async_sessionmaker[AsyncSession], job_id: uuid.UUID, org_id: uuid.UUID, **values: Any
) -> None:
    async with factory() as session:
        await bind_org(session, org_id)
        await session.execute(
            update(Job)
            .where(Job.id == job_id, Job.org_id == org_id, Job.status == "running")
            .values(updated_at=utcnow(), **values)
            .execution_options(synchronize_session=False)
        )
        await session.commit()


def _describe(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text[:MAX_ERROR_CHARS]


async def execute(
    factory: async_sessionmaker[AsyncSession], settings: Settings, job_id: uuid.UUID, org_id: uuid.UUID
) -> float | None:
    """Run one attempt of a job; returns the delay before its retry, or None when it is over."""
    claimed = await _claim(factory, job_id, org_id)
    if claimed is None:
        return None
    kind, payload, attempt, max_attempts = claimed
    spec = spec_for(kind)
    if spec is None:
        await _finish(
            factory, job_id, org_id, status="failed", finished_at=utcnow(),
            last_error=f"no task is registered as {kind!r} in this process",
        )  # fmt: skip
        JOBS.labels(kind, "failed").inc()
        return None
    store = SqlJobStore(factory)
    ctx = JobContext(job_id, org_id, settings, factory, store, attempt=attempt)
    log.info("job.start", job_id=str(job_id), kind=kind, attempt=attempt)
    try:
        result = await spec.handler(ctx, payload)
    except Exception as exc:
        error = _describe(exc)
        if attempt < max_attempts and not await store.cancel_requested(job_id, org_id):
            delay = backoff_s(attempt, settings.job_retry_base_s)
            log.warning(
                "job.retry", job_id=str(job_id), kind=kind, attempt=attempt, error=error, delay_s=delay
            )
            await _finish(
                factory, job_id, org_id, status="queued", last_error=error,
                run_after=utcnow() + timedelta(seconds=delay),
            )  # fmt: skip
            JOBS.labels(kind, "retried").inc()
            return delay
        log.error("job.failed", job_id=str(job_id), kind=kind, attempt=attempt, error=error,
                  trace=traceback.format_exc(limit=5))  # fmt: skip
        await _finish(factory, job_id, org_id, status="failed", last_error=error, finished_at=utcnow())
        JOBS.labels(kind, "failed").inc()
        return None
    cancelled = await store.cancel_requested(job_id, org_id)
    status = "cancelled" if cancelled else "succeeded"
    stored = result if isinstance(result, dict) else {"value": result}
    await _finish(factory, job_id, org_id, status=status, result=stored, finished_at=utcnow())
    JOBS.labels(kind, status).inc()
    log.info("job.done", job_id=str(job_id), kind=kind, status=status)
    return None


async def execute_system(
    factory: async_sessionmaker[AsyncSession], settings: Settings, name: str, **extras: Any
) -> dict[str, Any]:
    """Run a periodic system task (no job row, no org) once."""
    spec = spec_for(name)
    if spec is None:
        raise LookupError(f"no task is registered as {name!r}")
    ctx = JobContext(uuid.uuid4(), None, settings, factory, None, extras=dict(extras))
    return await spec.handler(ctx, {})
