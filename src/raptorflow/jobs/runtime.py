"""Wiring of jobs into a process: the API (in-process or Celery dispatch) and the Celery worker."""

from __future__ import annotations

import uuid
from functools import partial
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from raptorflow.config import Settings
from raptorflow.jobs.execution import execute
from raptorflow.jobs.registry import load_tasks
from raptorflow.jobs.scheduler import InProcessScheduler
from raptorflow.kit.jobs import (
    CeleryDispatcher,
    Dispatcher,
    InProcessDispatcher,
    JobRuntime,
    attach_runtime,
    make_celery,
)


def build_dispatcher(factory: async_sessionmaker[AsyncSession], settings: Settings) -> Dispatcher:
    """Celery when a broker is configured, otherwise asyncio tasks in this process."""
    load_tasks()
    if settings.broker_url:
        dispatcher: Dispatcher = CeleryDispatcher(make_celery(settings.broker_url))
    else:

        async def executor(job_id: uuid.UUID, org_id: uuid.UUID) -> float | None:
            return await partial(execute, factory, settings)(job_id, org_id)

        dispatcher = InProcessDispatcher(executor, concurrency=settings.job_concurrency)
    attach_runtime(factory, JobRuntime(dispatcher, settings.job_max_attempts))
    return dispatcher


async def start_background(state: Any) -> None:
    """Start the in-process periodic scheduler (only when no broker: beat does it otherwise)."""
    if state.settings.broker_url:
        return
    scheduler = InProcessScheduler(
        state.session_factory, state.settings, state.jobs, meter=getattr(state, "usage_meter", None)
    )
    scheduler.start()
    state.scheduler = scheduler


async def stop_background(state: Any) -> None:
    """Stop the scheduler and in-process jobs (unfinished ones are re-sent by the sweeper later)."""
    scheduler: InProcessScheduler | None = getattr(state, "scheduler", None)
    if scheduler is not None:
        await scheduler.stop()
    if isinstance(state.jobs, InProcessDispatcher):
        await state.jobs.close()
