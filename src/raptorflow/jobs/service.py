"""Job rules: enqueue inside the caller's transaction, dispatch after commit, inspect and cancel."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from raptorflow.config import Settings
from raptorflow.jobs.execution import execute
from raptorflow.jobs.registry import load_tasks
from raptorflow.jobs.repository import JobRepository
from raptorflow.kit.db import new_id, utcnow
from raptorflow.kit.deps import after_commit
from raptorflow.kit.errors import Conflict, InvalidInput, NotFound
from raptorflow.kit.jobs import runtime_of, spec_for
from raptorflow.kit.logging import get_logger
from raptorflow.kit.pagination import decode_cursor, encode_cursor
from raptorflow.kit.tenancy import bind_org
from raptorflow.models import Job

log = get_logger("raptorflow.jobs")
STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")
FINAL = frozenset({"succeeded", "failed", "cancelled"})


async def enqueue(
    session: AsyncSession,
    org_id: uuid.UUID,
    kind: str,
    payload: dict[str, Any],
    *,
    created_by: uuid.UUID | None = None,
    max_attempts: int | None = None,
) -> Job:
    """Insert a queued job in the caller's transaction; it is dispatched once that transaction commits.

    Without an attached runtime (a bare CLI session) the job stays queued until the sweeper
    (`jobs.dispatch_due`, every 30 s under beat or the in-process scheduler) or `run_inline` runs it.
    """
    if spec_for(kind) is None:
        load_tasks()
        if spec_for(kind) is None:
            raise ValueError(f"no job task is registered as {kind!r}")
    runtime = runtime_of(session)
    await bind_org(session, org_id)
    job = Job(
        id=new_id(),
        org_id=org_id,
        kind=kind,
        status="queued",
        payload=payload,
        attempts=0,
        max_attempts=max_attempts or (runtime.max_attempts if runtime else 5),
        processed=0,
        counts={},
        cancel_requested=False,
        created_by=created_by,
    )
    await JobRepository(session, org_id).add(job)
    if runtime is not None:
        dispatcher = runtime.dispatcher
        job_id = job.id

        async def dispatch() -> None:
            try:
                dispatcher.dispatch(job_id, org_id)
            except Exception as exc:  # broker down: the row is committed, the sweeper sends it later
                log.warning("job.dispatch_failed", job_id=str(job_id), error=type(exc).__name__)

        after_commit(session, dispatch)
    return job


class JobService:
    """Jobs of one org as its members see them; never commits."""

    def __init__(self, session: AsyncSession, org_id: uuid.UUID) -> None:
        self.session = session
        self.org_id = org_id
        self.repo = JobRepository(session, org_id)

    async def get(self, job_id: uuid.UUID) -> Job:
        """One job, or 404 (also for another org's job)."""
        job = await self.repo.get(job_id)
        if job is None:
            raise NotFound()
        return job

    async def page(
        self, *, status: str | None, kind: str | None, limit: int, cursor: str | None
    ) -> tuple[Sequence[Job], str | None]:
        """Newest first, with a cursor for the next page."""
        if status is not None and status not in STATUSES:
            raise InvalidInput("status", f"accepted values are {', '.join(STATUSES)}")
        values = decode_cursor(cursor)
        before: uuid.UUID | None = None
        if values is not None:
            try:
                before = uuid.UUID(str(values["before"]))
            except (KeyError, ValueError):
                raise InvalidInput("cursor", "not a cursor returned by this API") from None
        rows = await self.repo.page(status=status, kind=kind, before=before, limit=limit)
        nxt = encode_cursor({"before": str(rows[-1].id)}) if len(rows) == limit else None
        return rows, nxt

    async def cancel(self, job_id: uuid.UUID) -> Job:
        """Cancel a queued job at once, or ask a running one to stop; 409 when it is already over."""
        job = await self.get(job_id)
        if job.status in FINAL:
            raise Conflict(f"The job is already {job.status}.")
        now = utcnow()
        job.cancel_requested = True
        if job.status == "queued":
            job.status = "cancelled"
            job.finished_at = now
        job.updated_at = now
        await self.session.flush()
        return job


async def wait_for(
    factory: async_sessionmaker[AsyncSession],
    org_id: uuid.UUID,
    job_id: uuid.UUID,
    *,
    timeout_s: float = 30.0,
) -> Job:
    """Poll until the job is over (succeeded, failed or cancelled); TimeoutError otherwise."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        async with factory() as session:
            await bind_org(session, org_id)
            job = await session.scalar(select(Job).where(Job.id == job_id, Job.org_id == org_id))
        if job is None:
            raise LookupError(f"job {job_id} does not exist")
        if job.status in FINAL:
            return job
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"job {job_id} is still {job.status} after {timeout_s} s")
        await asyncio.sleep(0.05)


async def run_inline(
    factory: async_sessionmaker[AsyncSession],
    settings: Settings,
    job_id: uuid.UUID,
    org_id: uuid.UUID,
    *,
    max_wait_s: float = 600.0,
) -> Job:
    """Run a queued job in this process until it is over, sleeping through its retry delays (CLI)."""
    load_tasks()
    waited = 0.0
    while True:
        delay = await execute(factory, settings, job_id, org_id)
        if delay is None:
            break
        if waited + delay > max_wait_s:
            break
        await asyncio.sleep(delay)
        waited += delay
    async with factory() as session:
        await bind_org(session, org_id)
        job = await session.scalar(select(Job).where(Job.id == job_id, Job.org_id == org_id))
    if job is None:
        raise LookupError(f"job {job_id} does not exist")
    return job
