"""Periodic maintenance: indicator expiry recorded once per org (events, job results), job retention,
and the beat schedule holding every periodic task."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import httpx
import orjson
from sqlalchemy import select

from raptorflow.jobs.execution import execute_system
from raptorflow.jobs.tasks import RETENTION, id_before
from raptorflow.jobs.worker import create_celery
from raptorflow.kit.db import utcnow
from raptorflow.kit.jobs import org_transaction
from raptorflow.models import Indicator, Job
from tests.conftest import Actor, create_org, make_settings, sign_up
from tests.platform.conftest import TEST_BROKER_URL, Receiver


def _at(delta: timedelta) -> str:
    return (utcnow() + delta).isoformat()


async def _bulk(client: httpx.AsyncClient, headers: dict[str, str], items: list[dict[str, Any]]) -> None:
    created = await client.post("/api/v1/indicators/bulk", json={"items": items}, headers=headers)
    assert created.status_code == 200, created.text


async def _run(papp: Any) -> dict[str, Any]:
    """One beat tick of the maintenance scheduler, then every job it caused runs to its end."""
    found = await execute_system(
        papp.state.session_factory, papp.state.settings, "intel.maintenance", dispatcher=papp.state.jobs
    )
    await papp.state.jobs.drain(10)
    await papp.state.jobs.drain(10)  # the webhook deliveries queued by the maintenance jobs
    return found


async def _results(client: httpx.AsyncClient, actor: Actor, org_id: str) -> list[dict[str, Any]]:
    page = await client.get("/api/v1/jobs", params={"kind": "intel.maintain"}, headers=actor.in_org(org_id))
    assert page.status_code == 200
    assert all(j["status"] == "succeeded" for j in page.json()["items"]), page.text
    return [j["result"] for j in page.json()["items"]]


async def test_expiry_is_recorded_once_per_org_with_events(
    papp: Any, pclient: httpx.AsyncClient, owner: tuple[Actor, str], receiver: Receiver
) -> None:
    actor, org_id = owner
    other = await sign_up(pclient, "maint-other@example.com")
    other_org = await create_org(other, "maint-other")
    hook = await pclient.post(
        "/api/v1/webhooks",
        json={"url": receiver.url, "events": ["indicator.expired"]},
        headers=actor.in_org(org_id),
    )
    assert hook.status_code == 201, hook.text
    past = {"valid_from": _at(-timedelta(days=3)), "valid_until": _at(-timedelta(days=1))}
    await _bulk(
        pclient,
        actor.in_org(org_id),
        [
            {"value": "198.51.100.10", **past},
            {"value": "old.example", **past},
            {"value": "198.51.100.11", "valid_until": _at(timedelta(days=5))},
            {"value": "198.51.100.12"},
        ],
    )
    await _bulk(pclient, other.in_org(other_org), [{"value": "198.51.100.10", **past}])
    nothing = await sign_up(pclient, "maint-idle@example.com")
    idle_org = await create_org(nothing, "maint-idle")
    await _bulk(pclient, nothing.in_org(idle_org), [{"value": "198.51.100.13"}])

    assert await _run(papp) == {"queued": 2}  # the idle org gets no job
    assert await _results(pclient, actor, org_id) == [
        {"expired": 2, "unexpired": 0, "events": 2, "more": False}
    ]
    assert await _results(pclient, other, other_org) == [
        {"expired": 1, "unexpired": 0, "events": 0, "more": False}
    ]
    assert await _results(pclient, nothing, idle_org) == []
    sent = sorted(orjson.loads(body)["data"]["value"] for _headers, body in receiver.requests)
    assert sent == ["198.51.100.10", "old.example"]  # the other org's expiry is not announced here
    async with org_transaction(papp.state.session_factory, uuid.UUID(org_id)) as session:
        rows = (
            await session.execute(select(Indicator.value, Indicator.valid_until, Indicator.expired_at))
        ).all()
    assert {v for v, until, at in rows if at is not None and at == until} == {"198.51.100.10", "old.example"}
    assert all(at is None for v, _until, at in rows if v not in ("198.51.100.10", "old.example"))

    # Idempotent: nothing new to record, no new job.
    assert await _run(papp) == {"queued": 0}
    # Extending one indicator's validity clears its record at the next run (reads never depended on it).
    listed = await pclient.get("/api/v1/indicators", headers=actor.in_org(org_id))
    indicator = next(i for i in listed.json()["items"] if i["value"] == "old.example")
    assert indicator["expired"] is True
    patched = await pclient.patch(
        f"/api/v1/indicators/{indicator['id']}",
        json={"valid_until": _at(timedelta(days=30))},
        headers=actor.in_org(org_id),
    )
    assert patched.status_code == 200 and patched.json()["expired"] is False
    assert await _run(papp) == {"queued": 1}
    results = await _results(pclient, actor, org_id)
    assert results[0] == {"expired": 0, "unexpired": 1, "events": 0, "more": False}
    assert len(receiver.requests) == 2


async def test_finished_jobs_past_retention_are_purged(papp: Any, owner: tuple[Actor, str]) -> None:
    _actor, org_id = owner
    org = uuid.UUID(org_id)
    old = uuid.UUID(int=id_before(utcnow() - RETENTION - timedelta(days=1)).int + 1)
    older = uuid.UUID(int=old.int + 1)
    recent = uuid.UUID(int=id_before(utcnow()).int + 1)
    now = utcnow()
    async with org_transaction(papp.state.session_factory, org) as session:
        for job_id, status in ((old, "succeeded"), (older, "queued"), (recent, "failed")):
            session.add(Job(id=job_id, org_id=org, kind="jobs.dispatch_due", status=status, payload={},
                            attempts=1, max_attempts=1, processed=0, counts={}, cancel_requested=False,
                            created_at=now, updated_at=now))  # fmt: skip
    found = await execute_system(papp.state.session_factory, papp.state.settings, "jobs.purge_finished")
    assert found == {"purged": 1}
    async with org_transaction(papp.state.session_factory, org) as session:
        left = set((await session.scalars(select(Job.id).where(Job.org_id == org))).all())
    assert left == {older, recent}  # an unfinished job is never purged, a recent one is kept


def test_beat_schedules_every_periodic_task() -> None:
    celery = create_celery(make_settings("sqlite+aiosqlite://", broker_url=TEST_BROKER_URL))
    schedule = celery.conf.beat_schedule
    assert {
        "feeds.schedule_due",
        "platform.usage_flush",
        "billing.renew",
        "webhooks.retry_due",
        "intel.maintenance",
        "jobs.dispatch_due",
        "jobs.purge_finished",
    } <= set(schedule)
    assert schedule["intel.maintenance"]["schedule"] == 3600.0
    assert all(entry["args"] == [name] for name, entry in schedule.items())
