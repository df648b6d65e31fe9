"""API keys: minted once, stored hashed, scoped to one org and a role, revocable, expiring, IP-bound."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import create_async_engine

from raptorflow.app import create_app
from raptorflow.auth import apikeys
from raptorflow.kit.db import session_factory
from raptorflow.models import ApiKey
from tests.conftest import add_member, create_org, make_settings, sign_up, truncate_all

ORGS = "/api/v1/organizations"


async def _key(
    client: httpx.AsyncClient, headers: dict[str, str], org_id: str, **body: Any
) -> httpx.Response:
    return await client.post(f"{ORGS}/{org_id}/api-keys", json={"name": "siem", **body}, headers=headers)


async def test_secret_shown_once_and_stored_hashed(client: httpx.AsyncClient, app: Any) -> None:
    owner = await sign_up(client, "k1@example.com")
    org_id = await create_org(owner, "keys1")
    created = await _key(client, owner.headers, org_id, role="editor")
    assert created.status_code == 201
    body = created.json()
    secret = body["secret"]
    assert secret.startswith("rf_") and apikeys.parse(secret) == body["prefix"]
    listed = (await client.get(f"{ORGS}/{org_id}/api-keys", headers=owner.headers)).json()["items"]
    assert listed[0]["prefix"] == body["prefix"] and "secret" not in listed[0]
    assert listed[0]["created_by"] == owner.user_id
    single = (await client.get(f"{ORGS}/{org_id}/api-keys/{body['id']}", headers=owner.headers)).json()
    assert "secret" not in single
    owner_engine = create_async_engine(app.state.settings.database_url)
    async with session_factory(owner_engine)() as session:
        row = (await session.scalars(select(ApiKey))).one()
    await owner_engine.dispose()
    assert secret not in row.secret_hash and len(row.secret_hash) == 64


async def test_key_authenticates_by_bearer_and_header_and_implies_its_org(client: httpx.AsyncClient) -> None:
    owner = await sign_up(client, "k2@example.com")
    org_id = await create_org(owner, "keys2")
    other_org = await create_org(owner, "keys2b")
    secret = (await _key(client, owner.headers, org_id, role="viewer")).json()["secret"]
    for headers in ({"Authorization": f"Bearer {secret}"}, {"X-API-Key": secret}):
        response = await client.get(f"{ORGS}/{org_id}", headers=headers)
        assert response.status_code == 200, response.text
        assert response.json()["role"] == "viewer"
    # The key's org only: another org's id is just "not found".
    assert (await client.get(f"{ORGS}/{other_org}", headers={"X-API-Key": secret})).status_code == 404
    # A different X-Organization-ID than the key's org is refused.
    wrong = await client.get(
        f"{ORGS}/{org_id}/members", headers={"X-API-Key": secret, "X-Organization-ID": other_org}
    )
    assert wrong.status_code == 403
    # Viewer keys cannot write; keys are not users.
    assert (
        await client.patch(f"{ORGS}/{org_id}", json={"name": "x"}, headers={"X-API-Key": secret})
    ).status_code == 403
    assert (await client.get("/api/v1/users/me", headers={"X-API-Key": secret})).status_code == 403


async def test_role_cannot_exceed_the_creators(client: httpx.AsyncClient) -> None:
    owner = await sign_up(client, "k3@example.com")
    admin = await sign_up(client, "k3a@example.com")
    org_id = await create_org(owner, "keys3")
    await add_member(owner, org_id, admin, "admin")
    assert (await _key(client, admin.headers, org_id, role="owner")).status_code == 403
    assert (await _key(client, admin.headers, org_id, role="admin")).status_code == 201


async def test_revoked_expired_malformed_and_ip_bound_keys(client: httpx.AsyncClient) -> None:
    owner = await sign_up(client, "k4@example.com")
    org_id = await create_org(owner, "keys4")
    created = (await _key(client, owner.headers, org_id)).json()
    assert (
        await client.delete(f"{ORGS}/{org_id}/api-keys/{created['id']}", headers=owner.headers)
    ).status_code == 204
    assert (await client.get(f"{ORGS}/{org_id}", headers={"X-API-Key": created["secret"]})).status_code == 401
    past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    assert (await _key(client, owner.headers, org_id, expires_at=past)).status_code == 422
    soon = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    assert (await _key(client, owner.headers, org_id, expires_at=soon)).status_code == 201
    fenced = (await _key(client, owner.headers, org_id, allowed_ips=["10.0.0.0/8"])).json()
    assert (await client.get(f"{ORGS}/{org_id}", headers={"X-API-Key": fenced["secret"]})).status_code == 403
    local = (await _key(client, owner.headers, org_id, allowed_ips=["127.0.0.1"])).json()
    # httpx's ASGI transport reports the client as 127.0.0.1.
    assert (await client.get(f"{ORGS}/{org_id}", headers={"X-API-Key": local["secret"]})).status_code == 200
    bad_ip = await _key(client, owner.headers, org_id, allowed_ips=["not-an-ip"])
    assert bad_ip.status_code == 422 and "allowed_ips" in bad_ip.json()["errors"][0]["field"]
    flipped = created["secret"][:-1] + ("A" if created["secret"][-1] != "A" else "B")
    assert (await client.get(f"{ORGS}/{org_id}", headers={"X-API-Key": flipped})).status_code == 401


async def test_last_used_is_recorded(client: httpx.AsyncClient) -> None:
    owner = await sign_up(client, "k5@example.com")
    org_id = await create_org(owner, "keys5")
    created = (await _key(client, owner.headers, org_id)).json()
    assert created["last_used_at"] is None
    await client.get(f"{ORGS}/{org_id}", headers={"X-API-Key": created["secret"]})
    after = (await client.get(f"{ORGS}/{org_id}/api-keys/{created['id']}", headers=owner.headers)).json()
    assert after["last_used_at"] is not None


async def test_cached_keys_stop_working_at_once_when_revoked(
    database_url: str, redis_url: str, app: Any
) -> None:
    cached_app = create_app(make_settings(database_url, redis_url=redis_url))
    await cached_app.state.redis.flushdb()
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=cached_app), base_url="http://t"
        ) as http:
            owner = await sign_up(http, "cache@example.com")
            org_id = await create_org(owner, "cached")
            key = (await _key(http, owner.headers, org_id)).json()
            headers = {"X-API-Key": key["secret"]}
            assert (await http.get(f"{ORGS}/{org_id}", headers=headers)).status_code == 200
            assert await cached_app.state.redis.exists("rf:apikey:" + key["prefix"]) == 1
            # Served from the cache: a second call works without the key row being read again.
            assert (await http.get(f"{ORGS}/{org_id}", headers=headers)).status_code == 200
            revoked = await http.delete(f"{ORGS}/{org_id}/api-keys/{key['id']}", headers=owner.headers)
            assert revoked.status_code == 204
            assert await cached_app.state.redis.exists("rf:apikey:" + key["prefix"]) == 0
            assert (await http.get(f"{ORGS}/{org_id}", headers=headers)).status_code == 401
            # Deleting the org evicts its keys too.
            other = (await _key(http, owner.headers, org_id)).json()
            assert (
                await http.get(f"{ORGS}/{org_id}", headers={"X-API-Key": other["secret"]})
            ).status_code == 200
            assert (await http.delete(f"{ORGS}/{org_id}", headers=owner.headers)).status_code == 202
            assert await cached_app.state.redis.exists("rf:apikey:" + other["prefix"]) == 0
            assert (
                await http.get(f"{ORGS}/{org_id}", headers={"X-API-Key": other["secret"]})
            ).status_code == 401
            await cached_app.state.jobs.drain(10)  # the org's purge job ends before the next test
    finally:
        await cached_app.state.redis.flushdb()
        await cached_app.state.redis.aclose()
        await cached_app.state.engine.dispose()
        await truncate_all(app)


async def test_a_dead_redis_does_not_break_api_keys(database_url: str, app: Any) -> None:
    dead = create_app(make_settings(database_url, redis_url="redis://127.0.0.1:1/0"))
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=dead), base_url="http://t") as http:
            owner = await sign_up(http, "deadredis@example.com")
            org_id = await create_org(owner, "dead-redis")
            key = (await _key(http, owner.headers, org_id)).json()
            assert (
                await http.get(f"{ORGS}/{org_id}", headers={"X-API-Key": key["secret"]})
            ).status_code == 200
    finally:
        await dead.state.engine.dispose()
        await truncate_all(app)
