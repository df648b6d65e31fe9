"""Background jobs in-process: results, progress, retries with backoff, failure, cancellation, tenancy."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy import update

from raptorflow.jobs.execution import execute_system
from raptorflow.jobs.service import enqueue, wait_for
from raptorflow.kit.db import session_factory, utcnow
from raptorflow.kit.jobs import JobContext, backoff_s, org_transaction, task
from raptorflow.models import Job
from tests.conftest import Actor, create_org, sign_up
from tests.platform.conftest import enqueue_now

CALLS: dict[str, int] = {}
GATE: dict[str, asyncio.Event] = {}


@task("tests.sum")
async def sum_task(ctx: JobContext, payload: dict[str, Any]) -> dict[str, Any]:
    """Adds numbers, reporting progress as it goes."""
    values = payload["values"]
    for i, _ in enumerate(values, 1):
        await ctx.progress(i, len(values), added=i)
    return {"sum": sum(values), "org": str(ctx.org_id)}


@task("tests.flaky")
async def flaky_task(ctx: JobContext, payload: dict[str, Any]) -> dict[str, Any]:
    """Fails until its attempt number reaches `succeed_on`."""
    CALLS[payload["key"]] = CALLS.get(payload["key"], 0) + 1
    if ctx.attempt < payload["succeed_on"]:
        raise RuntimeError(f"transient failure {ctx.attempt}")
    return {"attempt": ctx.attempt}


@task("tests.wait_cancel")
async def wait_cancel_task(ctx: JobContext, payload: dict[str, Any]) -> dict[str, Any]:
    """Runs until cancelled, checking between steps."""
    GATE[payload["key"]].set()
    for step in range(400):
        if await ctx.is_cancelled():
            return {"stopped_at": step}
        await asyncio.sleep(0.01)
    return {"stopped_at": None}


async def test_job_result_and_progress_visible_to_its_org(
    papp: Any, pclient: httpx.AsyncClient, owner: tuple[Actor, str]
) -> None:
    actor, org_id = owner
    job_id = await enqueue_now(papp, org_id, "tests.sum", {"values": [1, 2, 3, 4]})
    done = await wait_for(papp.state.session_factory, uuid.UUID(org_id), job_id)
    assert done.status == "succeeded"
    body = (await pclient.get(f"/api/v1/jobs/{job_id}", headers=actor.in_org(org_id))).json()
    assert body["status"] == "succeeded"
    assert body["result"] == {"sum": 10, "org": org_id}
    assert body["progress"] == {"processed": 4, "total": 4, "counts": {"added": 4}}
    assert body["attempts"] == 1 and body["finished_at"] is not None
    listed = (await pclient.get("/api/v1/jobs", headers=actor.in_org(org_id))).json()
    assert [j["id"] for j in listed["items"]] == [str(job_id)]

    # Another org sees neither the job nor its existence.
    other = await sign_up(pclient, "other-jobs@example.com")
    other_org = await create_org(other, "other-jobs")
    missing = await pclient.get(f"/api/v1/jobs/{job_id}", headers=other.in_org(other_org))
    random = await pclient.get(f"/api/v1/jobs/{uuid.uuid4()}", headers=other.in_org(other_org))
    assert missing.status_code == random.status_code == 404
    assert missing.json()["detail"] == random.json()["detail"]
    assert (await pclient.get("/api/v1/jobs", headers=other.in_org(other_org))).json()["items"] == []


async def test_failing_job_is_retried_then_succeeds(
    papp: Any, pclient: httpx.AsyncClient, owner: tuple[Actor, str]
) -> None:
    actor, org_id = owner
    key = uuid.uuid4().hex
    job_id = await enqueue_now(papp, org_id, "tests.flaky", {"key": key, "succeed_on": 3})
    done = await wait_for(papp.state.session_factory, uuid.UUID(org_id), job_id)
    assert done.status == "succeeded"
    assert CALLS[key] == 3
    body = (await pclient.get(f"/api/v1/jobs/{job_id}", headers=actor.in_org(org_id))).json()
    assert body["attempts"] == 3 and body["result"] == {"attempt": 3}
    assert body["last_error"] == "RuntimeError: transient failure 2"


async def test_job_fails_after_max_attempts_with_last_error(
    papp: Any, pclient: httpx.AsyncClient, owner: tuple[Actor, str]
) -> None:
    actor, org_id = owner
    key = uuid.uuid4().hex
    job_id = await enqueue_now(papp, org_id, "tests.flaky", {"key": key, "succeed_on": 99})
    await wait_for(papp.state.session_factory, uuid.UUID(org_id), job_id)
    body = (await pclient.get(f"/api/v1/jobs/{job_id}", headers=actor.in_org(org_id))).json()
    assert body["status"] == "failed"
    assert body["attempts"] == 3 == CALLS[key]  # job_max_attempts=3 in this app
    assert body["last_error"] == "RuntimeError: transient failure 3"
    failed = await pclient.get("/api/v1/jobs?status=failed", headers=actor.in_org(org_id))
    assert [j["id"] for j in failed.json()["items"]] == [str(job_id)]
    bad = await pclient.get("/api/v1/jobs?status=done", headers=actor.in_org(org_id))
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "status"


async def test_cancel_running_job_stops_it(
    papp: Any, pclient: httpx.AsyncClient, owner: tuple[Actor, str]
) -> None:
    actor, org_id = owner
    key = uuid.uuid4().hex
    GATE[key] = asyncio.Event()
    job_id = await enqueue_now(papp, org_id, "tests.wait_cancel", {"key": key})
    await asyncio.wait_for(GATE[key].wait(), 10)
    cancelled = await pclient.post(f"/api/v1/jobs/{job_id}/cancel", headers=actor.in_org(org_id))
    assert cancelled.status_code == 200 and cancelled.json()["cancel_requested"] is True
    done = await wait_for(papp.state.session_factory, uuid.UUID(org_id), job_id)
    assert done.status == "cancelled"
    assert done.result is not None and done.result["stopped_at"] is not None
    again = await pclient.post(f"/api/v1/jobs/{job_id}/cancel", headers=actor.in_org(org_id))
    assert again.status_code == 409


def test_backoff_doubles_and_is_capped() -> None:
    assert [backoff_s(n, 2.0) for n in (1, 2, 3, 4)] == [2.0, 4.0, 8.0, 16.0]
    assert backoff_s(40, 2.0) == 3600.0


async def test_a_job_dispatched_many_times_runs_once(
    papp: Any, pclient: httpx.AsyncClient, owner: tuple[Actor, str]
) -> None:
    _actor, org_id = owner
    key = uuid.uuid4().hex
    job_id = await enqueue_now(papp, org_id, "tests.flaky", {"key": key, "succeed_on": 1})
    for _ in range(4):  # duplicate messages, as a broker may redeliver
        papp.state.jobs.dispatch(job_id, uuid.UUID(org_id))
    done = await wait_for(papp.state.session_factory, uuid.UUID(org_id), job_id)
    await papp.state.jobs.drain(5)
    assert done.status == "succeeded" and done.attempts == 1
    assert CALLS[key] == 1


async def test_sweeper_sends_lost_and_abandoned_jobs_again(
    papp: Any, pclient: httpx.AsyncClient, owner: tuple[Actor, str]
) -> None:
    _actor, org_id = owner
    org = uuid.UUID(org_id)
    # A session without a job runtime (a bare CLI session): the job is committed but never dispatched.
    bare_factory = session_factory(papp.state.engine)
    async with org_transaction(bare_factory, org) as session:
        lost = (await enqueue(session, org, "tests.sum", {"values": [5]})).id
        abandoned = (await enqueue(session, org, "tests.sum", {"values": [7]})).id
    long_ago = utcnow() - timedelta(hours=1)
    async with org_transaction(papp.state.session_factory, org) as session:
        await session.execute(update(Job).where(Job.id == lost).values(created_at=long_ago))
        await session.execute(  # its worker died while running it
            update(Job).where(Job.id == abandoned).values(status="running", attempts=1, updated_at=long_ago)
        )
    summary = await execute_system(
        papp.state.session_factory, papp.state.settings, "jobs.dispatch_due", dispatcher=papp.state.jobs
    )
    assert summary == {"dispatched": 2, "requeued": 1}
    assert (await wait_for(papp.state.session_factory, org, lost)).result == {"sum": 5, "org": org_id}
    rerun = await wait_for(papp.state.session_factory, org, abandoned)
    assert rerun.status == "succeeded" and rerun.attempts == 2
