"""HTTP routes of jobs: list, inspect, cancel."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query

from raptorflow.accounts.schemas import Page
from raptorflow.auth.deps import require
from raptorflow.auth.permissions import Permission
from raptorflow.auth.principal import OrgContext
from raptorflow.jobs.schemas import JobOut, JobProgress
from raptorflow.jobs.service import STATUSES, JobService
from raptorflow.kit.deps import SessionDep
from raptorflow.kit.pagination import CursorParam, LimitParam
from raptorflow.models import Job

router = APIRouter(prefix="/api/v1/jobs", tags=["jobs"])
Reader = Annotated[OrgContext, require(Permission.jobs_read)]
Manager = Annotated[OrgContext, require(Permission.jobs_manage)]
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "Not found (or not yours)"}}


def job_out(job: Job) -> JobOut:
    """The API shape of a job row."""
    return JobOut(
        id=job.id,
        kind=job.kind,
        status=job.status,
        attempts=job.attempts,
        max_attempts=job.max_attempts,
        last_error=job.last_error,
        progress=JobProgress(processed=job.processed, total=job.total, counts=dict(job.counts or {})),
        result=job.result,
        cancel_requested=job.cancel_requested,
        created_by=job.created_by,
        created_at=job.created_at,
        updated_at=job.updated_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
        run_after=job.run_after,
    )


@router.get("", summary="List background jobs")
async def list_jobs(
    ctx: Reader,
    session: SessionDep,
    status: Annotated[str | None, Query(max_length=16, json_schema_extra={"enum": list(STATUSES)})] = None,
    kind: Annotated[str | None, Query(max_length=100)] = None,
    limit: LimitParam = 100,
    cursor: CursorParam = None,
) -> Page[JobOut]:
    """Jobs of the org, newest first."""
    rows, nxt = await JobService(session, ctx.org_id).page(
        status=status, kind=kind, limit=limit, cursor=cursor
    )
    return Page[JobOut](items=[job_out(j) for j in rows], next_cursor=nxt)


@router.get("/{job_id}", responses=NOT_FOUND, summary="Get a job")
async def get_job(job_id: uuid.UUID, ctx: Reader, session: SessionDep) -> JobOut:
    """State, progress, attempts, last error and result of one job."""
    return job_out(await JobService(session, ctx.org_id).get(job_id))


@router.post(
    "/{job_id}/cancel",
    responses={**NOT_FOUND, 409: {"description": "Already over"}},
    summary="Cancel a job",
)
async def cancel_job(job_id: uuid.UUID, ctx: Manager, session: SessionDep) -> JobOut:
    """Cancel a queued job, or ask a running one to stop at its next check."""
    return job_out(await JobService(session, ctx.org_id).cancel(job_id))
