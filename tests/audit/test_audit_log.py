"""The audit log: written with the action, filtered and paged, append-only, hash-chained."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, ProgrammingError
from sqlalchemy.ext.asyncio import create_async_engine

from raptorflow.audit.service import verify_all
from raptorflow.kit.db import session_factory
from tests.conftest import add_member, create_org, sign_up

ORGS = "/api/v1/organizations"


async def test_actions_are_audited_with_context(client: httpx.AsyncClient) -> None:
    owner = await sign_up(client, "a1@example.com")
    member = await sign_up(client, "a1m@example.com")
    org_id = await create_org(owner, "audited")
    await add_member(owner, org_id, member, "viewer")
    await client.patch(
        f"{ORGS}/{org_id}/members/{member.user_id}", json={"role": "editor"}, headers=owner.headers
    )
    key = (await client.post(f"{ORGS}/{org_id}/api-keys", json={"name": "k"}, headers=owner.headers)).json()
    await client.delete(f"{ORGS}/{org_id}/api-keys/{key['id']}", headers=owner.headers)
    await client.patch(
        f"{ORGS}/{org_id}",
        json={"name": "Renamed"},
        headers={**owner.headers, "User-Agent": "ua/1", "X-Request-ID": "audit-req-0001"},
    )
    log = (await client.get(f"{ORGS}/{org_id}/audit-log", headers=owner.headers)).json()["items"]
    actions = [e["action"] for e in log]
    assert actions == [
        "org.update",
        "api_key.revoke",
        "api_key.create",
        "member.role_change",
        "member.add",
        "org.create",
    ]
    update = log[0]
    assert update["actor_user_id"] == owner.user_id
    assert update["request_id"] == "audit-req-0001"
    assert update["user_agent"] == "ua/1"
    assert update["ip"] == "127.0.0.1"
    assert update["details"]["after"] == {"name": "Renamed"}
    assert [e["seq"] for e in log] == [6, 5, 4, 3, 2, 1]
    assert all(log[i]["prev_hash"] == log[i + 1]["hash"] for i in range(len(log) - 1))


async def test_audit_log_is_for_admins_and_filters_and_pages(client: httpx.AsyncClient) -> None:
    owner = await sign_up(client, "a2@example.com")
    editor = await sign_up(client, "a2e@example.com")
    org_id = await create_org(owner, "filtered")
    await add_member(owner, org_id, editor, "editor")
    for i in range(3):
        await client.post(f"{ORGS}/{org_id}/workspaces", json={"name": f"w{i}"}, headers=owner.headers)
    assert (await client.get(f"{ORGS}/{org_id}/audit-log", headers=editor.headers)).status_code == 403
    only = (
        await client.get(
            f"{ORGS}/{org_id}/audit-log", params={"action": "workspace.create"}, headers=owner.headers
        )
    ).json()["items"]
    assert len(only) == 3
    first = (
        await client.get(f"{ORGS}/{org_id}/audit-log", params={"limit": 2}, headers=owner.headers)
    ).json()
    second = (
        await client.get(
            f"{ORGS}/{org_id}/audit-log",
            params={"limit": 2, "cursor": first["next_cursor"]},
            headers=owner.headers,
        )
    ).json()
    assert [e["seq"] for e in first["items"]] == [5, 4]
    assert [e["seq"] for e in second["items"]] == [3, 2]
    naive = await client.get(
        f"{ORGS}/{org_id}/audit-log", params={"since": "2026-01-01T00:00:00"}, headers=owner.headers
    )
    assert naive.status_code == 422 and naive.json()["errors"][0]["field"] == "query.since"
    assert "timezone" in naive.json()["errors"][0]["message"]


async def test_failed_sign_in_is_audited_even_though_it_fails(client: httpx.AsyncClient, app: Any) -> None:
    user = await sign_up(client, "a3@example.com")
    response = await client.post(
        "/api/v1/auth/token", data={"username": "a3@example.com", "password": "wrong" * 3}
    )
    assert response.status_code == 401
    export = (await client.get("/api/v1/users/me/export", headers=user.headers)).json()
    # The failed attempt names the account as target, not as actor; read it from the database.
    owner_engine = create_async_engine(app.state.settings.database_url)
    async with owner_engine.connect() as conn:
        rows = (await conn.execute(text("SELECT action, target_id FROM audit_log ORDER BY created_at"))).all()
    await owner_engine.dispose()
    assert ("auth.sign_in_failed", user.user_id) in [(a, t) for a, t in rows]
    assert export["profile"]["email"] == "a3@example.com"


async def test_chain_detects_tampering(client: httpx.AsyncClient, app: Any) -> None:
    owner = await sign_up(client, "a4@example.com")
    org_id = await create_org(owner, "tamper")
    for i in range(3):
        await client.post(f"{ORGS}/{org_id}/workspaces", json={"name": f"t{i}"}, headers=owner.headers)
    owner_engine = create_async_engine(app.state.settings.database_url)
    async with session_factory(owner_engine)() as session:
        assert all(r.ok for r in await verify_all(session))
    async with owner_engine.begin() as conn:
        await conn.execute(
            text(
                "UPDATE audit_log SET action = 'workspace.renamed' "
                "WHERE seq = 2 AND action = 'workspace.create'"
            )
        )
    async with session_factory(owner_engine)() as session:
        broken = [r for r in await verify_all(session) if not r.ok]
    assert len(broken) == 1 and "entry 2" in (broken[0].problem or "")
    env = {**os.environ, "RAPTORFLOW_DATABASE_URL": app.state.settings.database_url}
    result = subprocess.run(
        [sys.executable, "-m", "raptorflow", "audit", "verify"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    await owner_engine.dispose()
    assert result.returncode == 1
    assert "BROKEN" in result.stdout


@pytest.mark.parametrize("statement", ["UPDATE audit_log SET action = 'x'", "DELETE FROM audit_log"])
async def test_app_role_cannot_rewrite_history(client: httpx.AsyncClient, app: Any, statement: str) -> None:
    if app.state.engine.dialect.name != "postgresql":
        pytest.skip("privileges are a PostgreSQL feature; SQLite has no roles")
    owner = await sign_up(client, "a5@example.com")
    await create_org(owner, "immutable")
    with pytest.raises((ProgrammingError, DBAPIError)) as caught:
        async with app.state.engine.begin() as conn:
            await conn.execute(text("SELECT set_config('app.scope', 'system', true)"))
            await conn.execute(text(statement))
    assert "permission denied" in str(caught.value)
