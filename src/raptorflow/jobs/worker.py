"""The Celery application of `raptorflow worker`: one generic task runs any job; beat runs maintenance.

Each worker process keeps one event loop and one database engine for its life (created lazily after
the fork), and runs each job to completion on that loop.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from typing import Any

from celery import Celery
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from raptorflow.config import Settings, settings_from_env
from raptorflow.jobs.execution import execute, execute_system
from raptorflow.jobs.registry import load_tasks
from raptorflow.kit.db import create_engine, session_factory
from raptorflow.kit.jobs import (
    RUN_JOB_TASK,
    CeleryDispatcher,
    JobRuntime,
    attach_runtime,
    make_celery,
    periodic_tasks,
)

PERIODIC_TASK = "raptorflow.periodic"


class _Process:
    """Per-process state: event loop, engine, session factory (rebuilt in each forked child)."""

    def __init__(self) -> None:
        self.pid = -1
        self.loop: asyncio.AbstractEventLoop | None = None
        self.engine: AsyncEngine | None = None
        self.factory: async_sessionmaker[AsyncSession] | None = None

    def ready(self, settings: Settings, celery: Celery) -> tuple[asyncio.AbstractEventLoop, Any]:
        if self.pid != os.getpid() or self.loop is None or self.factory is None:
            self.pid = os.getpid()
            self.loop = asyncio.new_event_loop()
            self.engine = create_engine(
                settings.database_url,
                pool_size=2,
                role=None if settings.is_sqlite else (settings.database_app_role or None),
            )
            self.factory = session_factory(self.engine)
            attach_runtime(self.factory, JobRuntime(CeleryDispatcher(celery), settings.job_max_attempts))
        return self.loop, self.factory


def create_celery(settings: Settings) -> Celery:
    """The worker's Celery app with the job runner task and the beat schedule of periodic tasks."""
    if not settings.broker_url:
        raise RuntimeError(
            "RAPTORFLOW_BROKER_URL is not set; the worker needs a broker (redis://… or amqp://…)"
        )
    load_tasks()
    celery = make_celery(settings.broker_url)
    process = _Process()
    dispatcher = CeleryDispatcher(celery)

    @celery.task(name=RUN_JOB_TASK)  # type: ignore[untyped-decorator]
    def run_job(job_id: str, org_id: str) -> None:
        loop, factory = process.ready(settings, celery)
        delay = loop.run_until_complete(execute(factory, settings, uuid.UUID(job_id), uuid.UUID(org_id)))
        if delay is not None:
            dispatcher.dispatch(uuid.UUID(job_id), uuid.UUID(org_id), delay_s=delay)

    @celery.task(name=PERIODIC_TASK)  # type: ignore[untyped-decorator]
    def periodic(name: str) -> None:
        loop, factory = process.ready(settings, celery)
        loop.run_until_complete(execute_system(factory, settings, name, dispatcher=dispatcher))

    celery.conf.beat_schedule = {
        spec.name: {"task": PERIODIC_TASK, "schedule": float(spec.periodic_s or 60), "args": [spec.name]}
        for spec in periodic_tasks()
    }
    return celery


def celery_from_env() -> Celery:
    """Celery app for `celery -A raptorflow.jobs.worker:celery_from_env`-style embedding."""
    return create_celery(settings_from_env())
