"""Background jobs: the task registry, the context a handler runs in, and the two dispatchers.

Contract (other domains code against these names):

- Register a handler in `raptorflow/<domain>/tasks.py`, and append that module's dotted name to
  `raptorflow.jobs.registry.TASK_MODULES`::

      from raptorflow.kit.jobs import JobContext, task

      @task("imports.run")
      async def run_import(ctx: JobContext, payload: dict[str, Any]) -> dict[str, Any]:
          async with ctx.transaction() as session:       # org bound for RLS, committed on exit
              ...
          await ctx.progress(500, 1000, created=480, skipped=20)   # visible in GET /api/v1/jobs/{id}
          if await ctx.is_cancelled():
              return {"cancelled": True}
          return {"created": 480}                        # the job's `result`

- Enqueue from a service, inside the caller's transaction::

      from raptorflow.jobs.service import enqueue
      job = await enqueue(session, org_id, "imports.run", {"file": "..."}, created_by=user_id)

  The row is inserted now and dispatched only once the transaction commits (request sessions run
  `kit.deps.after_commit` hooks; `JobContext.transaction()` and `kit.jobs.org_transaction(factory,
  org_id)` do the same for jobs, CLI commands and tests). Outside a request (CLI, tests) use
  `raptorflow.jobs.service.run_inline(factory, settings, job_id, org_id)` to run a queued job to its
  end in the current process, or `await wait_for(factory, org_id, job_id)` to wait for a dispatched
  one.

- A handler that raises is retried with exponential backoff (`job_retry_base_s * 2**(attempt-1)`,
  capped at one hour) until `max_attempts` (setting `job_max_attempts`, default 5); then the job is
  `failed` with `last_error`. Handlers must be idempotent: a retry runs the whole handler again.
  States: queued → running → succeeded | failed | cancelled; a job is claimed by one atomic UPDATE,
  so two workers never run the same attempt.

- Dispatch: with `RAPTORFLOW_BROKER_URL` unset, jobs run in the API process as asyncio tasks (at most
  `job_concurrency` at once; they never block request handling); with it set (redis://… by default,
  amqp://… for RabbitMQ) they are sent to Celery workers started by `raptorflow worker [--beat]`.

- System (periodic) tasks take `org_id=None` in their context and have no job row: progress and
  cancellation are no-ops for them; they are registered with `@task(name, periodic_s=60)` and run by
  Celery beat (`raptorflow worker --beat`) or, without a broker, by the API process's scheduler. They
  see `ctx.extras["dispatcher"]`; cross-org work runs inside `kit.tenancy.cross_tenant(session)`.

- A committed job whose dispatch was lost (broker down, process exit) is sent again by the
  `jobs.dispatch_due` sweeper (every 30 s); a job left `running` 30 min without progress is re-queued.
"""

from __future__ import annotations

import asyncio
import contextvars
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from raptorflow.kit.deps import AFTER_COMMIT
from raptorflow.kit.logging import get_logger, keep_logging
from raptorflow.kit.tenancy import bind_org

if TYPE_CHECKING:
    from celery import Celery

    from raptorflow.config import Settings

log = get_logger("raptorflow.jobs")

Handler = Callable[["JobContext", dict[str, Any]], Awaitable[dict[str, Any]]]
# session.info key holding the Dispatcher of the sessions a factory makes (see `attach_dispatcher`).
DISPATCHER_INFO = "raptorflow.job_dispatcher"
RUN_JOB_TASK = "raptorflow.run_job"
MAX_BACKOFF_S = 3600.0


@asynccontextmanager
async def org_transaction(
    factory: async_sessionmaker[AsyncSession], org_id: uuid.UUID | None
) -> AsyncIterator[AsyncSession]:
    """A transaction outside a request (job, CLI, test): org bound for RLS, committed on exit, then
    its `kit.deps.after_commit` hooks run (so jobs enqueued inside are dispatched)."""
    async with factory() as session:
        if org_id is not None:
            await bind_org(session, org_id)
        try:
            yield session
            await session.commit()
        except BaseException:
            session.info.pop(AFTER_COMMIT, None)
            await session.rollback()
            raise
        for hook in session.info.pop(AFTER_COMMIT, []):
            await hook()


@dataclass(frozen=True)
class TaskSpec:
    """A registered handler; `periodic_s` makes it a system task run by beat every so many seconds."""

    name: str
    handler: Handler
    periodic_s: float | None = None


REGISTRY: dict[str, TaskSpec] = {}


def task(name: str, *, periodic_s: float | None = None) -> Callable[[Handler], Handler]:
    """Register `async def handler(ctx, payload) -> dict` under `name` (unique)."""

    def register(handler: Handler) -> Handler:
        existing = REGISTRY.get(name)
        if existing is not None and existing.handler is not handler:
            qualified = f"{handler.__module__}.{handler.__qualname__}"
            if f"{existing.handler.__module__}.{existing.handler.__qualname__}" != qualified:
                raise ValueError(f"job task {name!r} is registered twice")
        REGISTRY[name] = TaskSpec(name, handler, periodic_s)
        return handler

    return register


def spec_for(name: str) -> TaskSpec | None:
    """The registered task called `name`, if any."""
    return REGISTRY.get(name)


def periodic_tasks() -> list[TaskSpec]:
    """System tasks that beat (or the in-process scheduler) runs on a fixed period."""
    return [s for s in REGISTRY.values() if s.periodic_s]


def backoff_s(attempt: int, base_s: float) -> float:
    """Delay before retry number `attempt` (1-based): base, 2·base, 4·base … capped at one hour."""
    return float(min(MAX_BACKOFF_S, base_s * (2 ** max(0, attempt - 1))))


class JobStore(Protocol):
    """What a context needs from the job table (implemented in raptorflow.jobs.execution)."""

    async def set_progress(
        self, job_id: uuid.UUID, org_id: uuid.UUID, processed: int, total: int | None, counts: dict[str, int]
    ) -> None: ...

    async def cancel_requested(self, job_id: uuid.UUID, org_id: uuid.UUID) -> bool: ...


@dataclass
class JobContext:
    """What a running handler may use: its ids, settings, transactions, progress and cancellation."""

    job_id: uuid.UUID
    org_id: uuid.UUID | None
    settings: Settings
    session_factory: async_sessionmaker[AsyncSession]
    store: JobStore | None = None
    attempt: int = 1
    extras: dict[str, Any] = field(default_factory=dict)

    def transaction(self) -> AbstractAsyncContextManager[AsyncSession]:
        """One transaction with the org bound (RLS) like a request; committed when the block exits."""
        return org_transaction(self.session_factory, self.org_id)

    async def progress(self, processed: int, total: int | None = None, **counts: int) -> None:
        """Record how far the job is (its own short transaction, visible to the API at once)."""
        if self.store is not None and self.org_id is not None:
            await self.store.set_progress(self.job_id, self.org_id, processed, total, counts)

    async def is_cancelled(self) -> bool:
        """True once someone asked to cancel this job; the handler should stop soon after."""
        if self.store is None or self.org_id is None:
            return False
        return await self.store.cancel_requested(self.job_id, self.org_id)


class Dispatcher(Protocol):
    """Sends a committed job to whatever runs it."""

    def dispatch(self, job_id: uuid.UUID, org_id: uuid.UUID, *, delay_s: float = 0.0) -> None: ...


# Runs one attempt of a job; returns the delay before the next attempt, or None when it is over.
Executor = Callable[[uuid.UUID, uuid.UUID], Awaitable[float | None]]


class InProcessDispatcher:
    """Runs jobs as asyncio tasks in this process, a bounded number at a time (embedded default)."""

    def __init__(self, executor: Executor, *, concurrency: int = 2) -> None:
        self.executor = executor
        self.concurrency = concurrency
        self._semaphore: asyncio.Semaphore | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._timers: set[asyncio.TimerHandle] = set()

    def dispatch(self, job_id: uuid.UUID, org_id: uuid.UUID, *, delay_s: float = 0.0) -> None:
        """Start (or schedule) the job on the running event loop."""
        loop = asyncio.get_running_loop()
        if delay_s > 0:
            handle: asyncio.TimerHandle

            def fire() -> None:
                self._timers.discard(handle)
                self._start(job_id, org_id)

            handle = loop.call_later(delay_s, fire)
            self._timers.add(handle)
            return
        self._start(job_id, org_id)

    def _start(self, job_id: uuid.UUID, org_id: uuid.UUID) -> None:
        # A fresh context: the job must not inherit the enqueuing request's log fields (request_id).
        running = asyncio.get_running_loop().create_task(
            self._run(job_id, org_id), context=contextvars.Context()
        )
        self._tasks.add(running)
        running.add_done_callback(self._tasks.discard)

    async def _run(self, job_id: uuid.UUID, org_id: uuid.UUID) -> None:
        if self._semaphore is None:
            self._semaphore = asyncio.Semaphore(self.concurrency)
        async with self._semaphore:
            try:
                retry_in = await self.executor(job_id, org_id)
            except Exception:
                # The executor records failures itself; reaching here means the database is unusable.
                log.exception("job.executor_crashed", job_id=str(job_id))
                return
        if retry_in is not None:
            self.dispatch(job_id, org_id, delay_s=retry_in)

    @property
    def pending(self) -> int:
        """Jobs running or waiting for a slot or a retry in this process."""
        return len(self._tasks) + len(self._timers)

    async def drain(self, timeout_s: float = 30.0) -> None:
        """Wait until nothing runs (retries scheduled later are not waited for)."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        while self._tasks and asyncio.get_running_loop().time() < deadline:
            await asyncio.wait(
                set(self._tasks), timeout=max(0.0, deadline - asyncio.get_running_loop().time())
            )

    async def close(self) -> None:
        """Stop scheduled retries and cancel running tasks (their rows are re-queued by the sweeper)."""
        for handle in list(self._timers):
            handle.cancel()
        self._timers.clear()
        for running in list(self._tasks):
            running.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)


class CeleryDispatcher:
    """Sends jobs to Celery workers through the broker (Redis by default, RabbitMQ by URL)."""

    def __init__(self, celery: Celery) -> None:
        self.celery = celery

    def dispatch(self, job_id: uuid.UUID, org_id: uuid.UUID, *, delay_s: float = 0.0) -> None:
        """Publish one message naming the job; the worker claims the row before running it."""
        self.celery.send_task(
            RUN_JOB_TASK, args=[str(job_id), str(org_id)], countdown=delay_s if delay_s > 0 else None
        )


def make_celery(broker_url: str, *, name: str = "raptorflow") -> Celery:
    """A Celery app on `broker_url` (results live in the jobs table, so no result backend)."""
    # Imported here: Celery is heavy, and only broker-configured processes need it.
    from celery import Celery, signals

    # Celery's own logging set-up would print plain text beside our JSON lines.
    signals.setup_logging.connect(keep_logging, weak=False, dispatch_uid="raptorflow.keep_logging")
    app = Celery(name, broker=broker_url)
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        task_acks_late=True,  # a worker that dies mid-job leaves the message for another worker
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        broker_connection_retry_on_startup=True,
        broker_transport_options={"visibility_timeout": 3600},
        timezone="UTC",
        enable_utc=True,
    )
    return app


@dataclass(frozen=True)
class JobRuntime:
    """Where a factory's sessions send the jobs they enqueue, and the retry budget of new jobs."""

    dispatcher: Dispatcher
    max_attempts: int = 5


def attach_runtime(factory: async_sessionmaker[AsyncSession], runtime: JobRuntime) -> None:
    """Make every session of `factory` know where to send the jobs it enqueues."""
    info = dict(factory.kw.get("info") or {})
    info[DISPATCHER_INFO] = runtime
    factory.configure(info=info)


def runtime_of(session: AsyncSession) -> JobRuntime | None:
    """The job runtime attached to this session's factory, if any."""
    found = session.info.get(DISPATCHER_INFO)
    return found if isinstance(found, JobRuntime) else None
