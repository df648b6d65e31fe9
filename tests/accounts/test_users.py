"""The signed-in user's own account: profile, password, sessions, export, deletion."""

from __future__ import annotations

from typing import Any

import httpx

from tests.conftest import PASSWORD, add_member, create_org, sign_in, sign_up

ME = "/api/v1/users/me"


async def test_profile_read_and_update(client: httpx.AsyncClient) -> None:
    user = await sign_up(client, "u1@example.com", name="Una")
    me = (await client.get(ME, headers=user.headers)).json()
    assert me["name"] == "Una" and me["external"] is False
    updated = await client.patch(ME, json={"name": "Una Smith"}, headers=user.headers)
    assert updated.json()["name"] == "Una Smith"
    refused = await client.patch(ME, json={"email": "evil@example.com", "name": "x"}, headers=user.headers)
    assert refused.status_code == 422


async def test_password_change_revokes_other_sessions(client: httpx.AsyncClient) -> None:
    user = await sign_up(client, "u2@example.com")
    other = await sign_in(client, "u2@example.com")
    wrong = await client.post(
        f"{ME}/password",
        json={"current_password": "nope-nope-nope", "new_password": "x" * 16},
        headers=user.headers,
    )
    assert wrong.status_code == 422 and wrong.json()["errors"][0]["field"] == "current_password"
    weak = await client.post(
        f"{ME}/password", json={"current_password": PASSWORD, "new_password": "short"}, headers=user.headers
    )
    assert weak.status_code == 422 and weak.json()["errors"][0]["field"] == "new_password"
    changed = await client.post(
        f"{ME}/password",
        json={"current_password": PASSWORD, "new_password": "a brand new passphrase"},
        headers=user.headers,
    )
    assert changed.status_code == 204
    assert (await client.get(ME, headers=user.headers)).status_code == 200
    assert (await client.get(ME, headers=other.headers)).status_code == 401
    refresh = await client.post("/api/v1/auth/refresh", json={"refresh_token": other.tokens["refresh_token"]})
    assert refresh.status_code == 401
    assert (
        await client.post("/api/v1/auth/token", data={"username": "u2@example.com", "password": PASSWORD})
    ).status_code == 401
    await sign_in(client, "u2@example.com", "a brand new passphrase")


async def test_sessions_list_and_revoke(client: httpx.AsyncClient) -> None:
    user = await sign_up(client, "u3@example.com")
    second = await sign_in(client, "u3@example.com")
    stranger = await sign_up(client, "u3s@example.com")
    sessions = (await client.get(f"{ME}/sessions", headers=user.headers)).json()["items"]
    assert len(sessions) == 2
    assert sum(s["current"] for s in sessions) == 1
    other_id = next(s["id"] for s in sessions if not s["current"])
    # Someone else cannot revoke it; it looks like it does not exist.
    assert (await client.delete(f"{ME}/sessions/{other_id}", headers=stranger.headers)).status_code == 404
    assert (await client.delete(f"{ME}/sessions/{other_id}", headers=user.headers)).status_code == 204
    assert (await client.get(ME, headers=second.headers)).status_code == 401
    assert (await client.get(ME, headers=user.headers)).status_code == 200


async def test_export_contains_profile_orgs_sessions_activity(client: httpx.AsyncClient) -> None:
    user = await sign_up(client, "u4@example.com")
    await create_org(user, "exported")
    data = (await client.get(f"{ME}/export", headers=user.headers)).json()
    assert data["profile"]["email"] == "u4@example.com"
    assert [o["slug"] for o in data["organizations"]] == ["exported"]
    assert len(data["sessions"]) == 1
    actions = {a["action"] for a in data["activity"]}
    assert {"user.register", "auth.sign_in", "org.create"} <= actions


async def test_delete_refused_while_sole_owner_with_members(client: httpx.AsyncClient, app: Any) -> None:
    owner = await sign_up(client, "u5@example.com")
    member = await sign_up(client, "u5m@example.com")
    shared = await create_org(owner, "shared")
    solo = await create_org(owner, "solo")
    await add_member(owner, shared, member, "editor")
    refused = await client.delete(ME, headers=owner.headers)
    assert refused.status_code == 409
    assert "shared" in refused.json()["detail"] and "solo" not in refused.json()["detail"]
    transfer = await client.post(
        f"/api/v1/organizations/{shared}/transfer-ownership",
        json={"user_id": member.user_id},
        headers=owner.headers,
    )
    assert transfer.status_code == 200
    # The org where they were alone is retired at once and purged by a job: 202 with its id.
    deleted = await client.delete(ME, headers=owner.headers)
    assert deleted.status_code == 202 and len(deleted.json()["job_ids"]) == 1
    # Signed out everywhere, cannot sign in, email free again, personal data gone from the member list.
    assert (await client.get(ME, headers=owner.headers)).status_code == 401
    assert (
        await client.post("/api/v1/auth/token", data={"username": "u5@example.com", "password": PASSWORD})
    ).status_code == 401
    members = (await client.get(f"/api/v1/organizations/{shared}/members", headers=member.headers)).json()[
        "items"
    ]
    assert [m["email"] for m in members] == ["u5m@example.com"]
    # The org where they were alone went with them; the shared one stays with its new owner.
    assert (await client.get(f"/api/v1/organizations/{solo}", headers=member.headers)).status_code == 404
    log = (await client.get(f"/api/v1/organizations/{shared}/audit-log", headers=member.headers)).json()[
        "items"
    ]
    assert any(e["actor_user_id"] == owner.user_id for e in log)
    assert all(e["ip"] is None for e in log if e["actor_user_id"] == owner.user_id)
    again = await sign_up(client, "u5@example.com")
    assert again.user_id != owner.user_id
    await app.state.jobs.drain(10)  # the solo org's purge job
