"""Deleting an organization: unreachable at once, its data purged by an idempotent background job."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import create_async_engine

from raptorflow.accounts import tasks as account_tasks
from raptorflow.kit.jobs import JobContext
from raptorflow.models import AuditEntry, Indicator, Job, Organization
from tests.conftest import add_member, create_org, sign_up

ORGS = "/api/v1/organizations"


async def _indicators(client: httpx.AsyncClient, headers: dict[str, str], values: list[str]) -> None:
    created = await client.post(
        "/api/v1/indicators/bulk", json={"items": [{"value": v} for v in values]}, headers=headers
    )
    assert created.status_code == 200, created.text


async def _count(app: Any, model: Any, org_id: str) -> int:
    # The owner's engine: the app role (RLS) would see no rows without an org bound.
    engine = create_async_engine(app.state.settings.database_url)
    try:
        async with engine.connect() as conn:
            column = model.id if model is Organization else model.org_id
            return int(await conn.scalar(select(func.count()).where(column == uuid.UUID(org_id))) or 0)
    finally:
        await engine.dispose()


async def test_org_deletion_retires_at_once_and_purges_in_a_job(
    client: httpx.AsyncClient, app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(account_tasks, "PURGE_BATCH", 2)  # several batches per table
    owner = await sign_up(client, "gone-owner@example.com")
    member = await sign_up(client, "gone-member@example.com")
    org_id = await create_org(owner, "doomed")
    kept_id = await create_org(owner, "kept")
    await add_member(owner, org_id, member, "editor")
    await _indicators(
        client, owner.in_org(org_id), ["198.51.100.1", "198.51.100.2", "evil.example", "a.example"]
    )
    await _indicators(client, owner.in_org(kept_id), ["198.51.100.1"])
    key = await client.post(
        f"{ORGS}/{org_id}/api-keys", json={"name": "siem", "role": "viewer"}, headers=owner.headers
    )
    invited = await client.post(
        f"{ORGS}/{org_id}/members",
        json={"email": "later@example.com", "role": "viewer"},
        headers=owner.headers,
    )
    token = invited.json()["invitation"]["accept_url"].split("token=")[1]

    # A live org is never purged, whoever queues the job.
    ctx = JobContext(uuid.uuid4(), uuid.UUID(org_id), app.state.settings, app.state.session_factory)
    assert (await account_tasks.purge_org(ctx, {}))["purged"] is False
    assert await _count(app, Indicator, org_id) == 4

    deleted = await client.delete(f"{ORGS}/{org_id}", headers=member.headers)
    assert deleted.status_code == 403  # owners only
    deleted = await client.delete(f"{ORGS}/{org_id}", headers=owner.headers)
    assert deleted.status_code == 202, deleted.text
    assert deleted.headers["content-type"] == "application/json"
    [job_id] = deleted.json()["job_ids"]

    # Unreachable at once for members, the key and the invitation; the slug is free again.
    assert (await client.get(f"{ORGS}/{org_id}", headers=member.headers)).status_code == 404
    assert (await client.get(f"{ORGS}/{org_id}", headers=owner.headers)).status_code == 404
    assert (
        await client.get(f"{ORGS}/{org_id}", headers={"X-API-Key": key.json()["secret"]})
    ).status_code == 401
    later = await sign_up(client, "later@example.com")  # open invitations are accepted at sign-up
    assert (await client.get(ORGS, headers=later.headers)).json()["items"] == []
    accept = await client.post("/api/v1/invitations/accept", json={"token": token}, headers=later.headers)
    assert accept.status_code == 404, accept.text
    assert [o["slug"] for o in (await client.get(ORGS, headers=owner.headers)).json()["items"]] == ["kept"]
    await create_org(owner, "doomed")

    # The purge job (run in-process after the commit) deletes the data, then the org and its job row.
    for _ in range(200):
        if await _count(app, Organization, org_id) == 0:
            break
        await asyncio.sleep(0.05)
    assert await _count(app, Organization, org_id) == 0
    assert await _count(app, Indicator, org_id) == 0
    assert await _count(app, Job, org_id) == 0, job_id
    assert await _count(app, AuditEntry, org_id) > 0  # the audit chain is kept
    assert await _count(app, Indicator, kept_id) == 1  # nothing of another org is touched
    kept = await client.get("/api/v1/indicators", headers=owner.in_org(kept_id))
    assert [i["value"] for i in kept.json()["items"]] == ["198.51.100.1"]
