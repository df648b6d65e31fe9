"""Organizations, members, invitations, roles, ownership, workspaces."""

from __future__ import annotations

from typing import Any

import httpx

from tests.conftest import PASSWORD, add_member, create_org, sign_in, sign_up

ORGS = "/api/v1/organizations"


async def test_create_list_get_update_delete(client: httpx.AsyncClient, app: Any) -> None:
    owner = await sign_up(client, "owner@example.com")
    created = await client.post(ORGS, json={"name": "Acme CTI", "slug": "acme"}, headers=owner.headers)
    assert created.status_code == 201
    org = created.json()
    assert org["role"] == "owner"
    assert created.headers["location"] == f"{ORGS}/{org['id']}"
    listed = (await client.get(ORGS, headers=owner.headers)).json()
    assert [o["slug"] for o in listed["items"]] == ["acme"]
    assert listed["next_cursor"] is None
    got = await client.get(f"{ORGS}/{org['id']}", headers=owner.headers)
    assert got.json()["name"] == "Acme CTI"
    patched = await client.patch(f"{ORGS}/{org['id']}", json={"name": "Acme Intel"}, headers=owner.headers)
    assert patched.status_code == 200 and patched.json()["name"] == "Acme Intel"
    deleted = await client.delete(f"{ORGS}/{org['id']}", headers=owner.headers)
    assert deleted.status_code == 202 and len(deleted.json()["job_ids"]) == 1
    assert (await client.get(f"{ORGS}/{org['id']}", headers=owner.headers)).status_code == 404
    await app.state.jobs.drain(10)  # its data is purged by a background job


async def test_slug_rules(client: httpx.AsyncClient) -> None:
    owner = await sign_up(client, "slugger@example.com")
    bad = await client.post(ORGS, json={"name": "X", "slug": "Not A Slug"}, headers=owner.headers)
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["field"] == "body.slug"
    await create_org(owner, "taken")
    dup = await client.post(ORGS, json={"name": "Y", "slug": "taken"}, headers=owner.headers)
    assert dup.status_code == 409
    assert dup.json()["errors"][0]["field"] == "slug"


async def test_org_routes_need_sign_in(client: httpx.AsyncClient) -> None:
    response = await client.get(ORGS)
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"


async def test_members_add_existing_user_and_invite_unknown_email(client: httpx.AsyncClient) -> None:
    owner = await sign_up(client, "o1@example.com")
    existing = await sign_up(client, "member@example.com")
    org_id = await create_org(owner, "team")
    await add_member(owner, org_id, existing, "editor")
    invited = await client.post(
        f"{ORGS}/{org_id}/members",
        json={"email": "Newbie@Example.com", "role": "viewer"},
        headers=owner.headers,
    )
    assert invited.status_code == 201
    body = invited.json()
    assert body["status"] == "invited"
    assert body["invitation"]["email"] == "newbie@example.com"
    assert "token=" in body["invitation"]["accept_url"]
    pending = (await client.get(f"{ORGS}/{org_id}/invitations", headers=owner.headers)).json()["items"]
    assert [p["email"] for p in pending] == ["newbie@example.com"]
    # Signing up with the invited email accepts the invitation.
    newbie = await sign_up(client, "newbie@example.com")
    mine = (await client.get("/api/v1/users/me/organizations", headers=newbie.headers)).json()["items"]
    assert [(o["slug"], o["role"]) for o in mine] == [("team", "viewer")]
    members = (await client.get(f"{ORGS}/{org_id}/members", headers=newbie.headers)).json()["items"]
    assert sorted((m["email"], m["role"]) for m in members) == [
        ("member@example.com", "editor"),
        ("newbie@example.com", "viewer"),
        ("o1@example.com", "owner"),
    ]
    assert (await client.get(f"{ORGS}/{org_id}/invitations", headers=owner.headers)).json()["items"] == []


async def test_invitation_link_only_for_its_addressee(client: httpx.AsyncClient) -> None:
    owner = await sign_up(client, "o2@example.com")
    org_id = await create_org(owner, "linked")
    stranger = await sign_up(client, "stranger@example.com")
    invited = await client.post(
        f"{ORGS}/{org_id}/members",
        json={"email": "later@example.com", "role": "editor"},
        headers=owner.headers,
    )
    token = invited.json()["invitation"]["accept_url"].split("token=")[1]
    refused = await client.post("/api/v1/invitations/accept", json={"token": token}, headers=stranger.headers)
    assert refused.status_code == 404
    # An existing account whose email matches, created after the invitation, joins on sign-in or by link.
    later = await sign_up(client, "later@example.com")
    accepted = await client.post("/api/v1/invitations/accept", json={"token": token}, headers=later.headers)
    assert accepted.status_code == 200
    assert accepted.json()["role"] == "editor"


async def test_role_rules(client: httpx.AsyncClient) -> None:
    owner = await sign_up(client, "o3@example.com")
    admin = await sign_up(client, "admin@example.com")
    editor = await sign_up(client, "editor@example.com")
    org_id = await create_org(owner, "rules")
    await add_member(owner, org_id, admin, "admin")
    await add_member(owner, org_id, editor, "editor")
    members = f"{ORGS}/{org_id}/members"
    # Nobody changes their own role.
    own = await client.patch(f"{members}/{admin.user_id}", json={"role": "owner"}, headers=admin.headers)
    assert own.status_code == 403
    # Only owners grant owner.
    grant = await client.patch(f"{members}/{editor.user_id}", json={"role": "owner"}, headers=admin.headers)
    assert grant.status_code == 403
    # Admins promote up to admin.
    ok = await client.patch(f"{members}/{editor.user_id}", json={"role": "admin"}, headers=admin.headers)
    assert ok.status_code == 200 and ok.json()["role"] == "admin"
    # Editors cannot manage members.
    await client.patch(f"{members}/{editor.user_id}", json={"role": "editor"}, headers=owner.headers)
    refused = await client.delete(f"{members}/{admin.user_id}", headers=editor.headers)
    assert refused.status_code == 403
    # The last owner cannot leave or be demoted.
    leave = await client.post(f"{ORGS}/{org_id}/leave", headers=owner.headers)
    assert leave.status_code == 409
    # Admin cannot remove the owner.
    remove_owner = await client.delete(f"{members}/{owner.user_id}", headers=admin.headers)
    assert remove_owner.status_code == 403
    # Unknown member → 404.
    ghost = await client.patch(
        f"{members}/00000000-0000-7000-8000-000000000000", json={"role": "viewer"}, headers=owner.headers
    )
    assert ghost.status_code == 404


async def test_transfer_ownership_then_leave(client: httpx.AsyncClient) -> None:
    owner = await sign_up(client, "o4@example.com")
    heir = await sign_up(client, "heir@example.com")
    org_id = await create_org(owner, "dynasty")
    await add_member(owner, org_id, heir, "editor")
    moved = await client.post(
        f"{ORGS}/{org_id}/transfer-ownership", json={"user_id": heir.user_id}, headers=owner.headers
    )
    assert moved.status_code == 200 and moved.json()["role"] == "owner"
    roles = {
        m["email"]: m["role"]
        for m in (await client.get(f"{ORGS}/{org_id}/members", headers=heir.headers)).json()["items"]
    }
    assert roles == {"o4@example.com": "admin", "heir@example.com": "owner"}
    assert (await client.post(f"{ORGS}/{org_id}/leave", headers=owner.headers)).status_code == 204
    assert (await client.get(f"{ORGS}/{org_id}", headers=owner.headers)).status_code == 404


async def test_workspaces_crud(client: httpx.AsyncClient) -> None:
    owner = await sign_up(client, "o5@example.com")
    viewer = await sign_up(client, "viewer5@example.com")
    org_id = await create_org(owner, "spaces")
    await add_member(owner, org_id, viewer, "viewer")
    base = f"{ORGS}/{org_id}/workspaces"
    created = await client.post(base, json={"name": "SOC", "description": "alerts"}, headers=owner.headers)
    assert created.status_code == 201
    wid = created.json()["id"]
    assert (await client.post(base, json={"name": "SOC"}, headers=owner.headers)).status_code == 409
    assert (await client.post(base, json={"name": "Nope"}, headers=viewer.headers)).status_code == 403
    assert [w["name"] for w in (await client.get(base, headers=viewer.headers)).json()["items"]] == ["SOC"]
    renamed = await client.patch(f"{base}/{wid}", json={"name": "SOC-EU"}, headers=owner.headers)
    assert renamed.json()["name"] == "SOC-EU"
    assert (await client.get(f"{base}/{wid}", headers=viewer.headers)).json()["description"] == "alerts"
    assert (await client.delete(f"{base}/{wid}", headers=owner.headers)).status_code == 204
    assert (await client.get(f"{base}/{wid}", headers=owner.headers)).status_code == 404


async def test_org_header_rules(client: httpx.AsyncClient) -> None:
    owner = await sign_up(client, "o6@example.com")
    await create_org(owner, "hdr")
    # /users/me needs no org; routes under /organizations/{id} take it from the path.
    assert (await client.get(f"{ORGS}/not-a-uuid", headers=owner.headers)).status_code == 404


async def test_pagination_of_members(client: httpx.AsyncClient) -> None:
    owner = await sign_up(client, "o7@example.com")
    org_id = await create_org(owner, "paged")
    for i in range(3):
        member = await sign_up(client, f"p{i}@example.com")
        await add_member(owner, org_id, member, "viewer")
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = (await client.get(f"{ORGS}/{org_id}/members", params=params, headers=owner.headers)).json()
        seen += [m["email"] for m in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == 4 and len(set(seen)) == 4
    bad = await client.get(f"{ORGS}/{org_id}/members", params={"cursor": "!!!"}, headers=owner.headers)
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "cursor"
    too_big = await client.get(f"{ORGS}/{org_id}/members", params={"limit": 5000}, headers=owner.headers)
    assert too_big.status_code == 422


async def test_sign_in_after_password_unchanged(client: httpx.AsyncClient) -> None:
    await sign_up(client, "o8@example.com")
    again = await sign_in(client, "o8@example.com", PASSWORD)
    assert again.tokens["access_token"]


async def test_org_context_header(client: httpx.AsyncClient) -> None:
    owner = await sign_up(client, "ctx@example.com")
    viewer = await sign_up(client, "ctxv@example.com")
    org_id = await create_org(owner, "ctx")
    await add_member(owner, org_id, viewer, "viewer")
    missing = await client.get("/api/v1/whoami", headers=owner.headers)
    assert missing.status_code == 400 and "X-Organization-ID" in missing.json()["detail"]
    malformed = await client.get("/api/v1/whoami", headers={**owner.headers, "X-Organization-ID": "acme"})
    assert malformed.status_code == 400
    stranger = await sign_up(client, "ctxs@example.com")
    not_member = await client.get("/api/v1/whoami", headers=stranger.in_org(org_id))
    random_org = await client.get(
        "/api/v1/whoami", headers=stranger.in_org("01900000-0000-7000-8000-000000000000")
    )
    assert not_member.status_code == random_org.status_code == 404
    assert not_member.json()["detail"] == random_org.json()["detail"]
    mine = (await client.get("/api/v1/whoami", headers=viewer.in_org(org_id))).json()
    assert mine["role"] == "viewer" and mine["user_id"] == viewer.user_id
    assert "org:read" in mine["permissions"] and "org:update" not in mine["permissions"]
    key = await client.post(
        f"{ORGS}/{org_id}/api-keys", json={"name": "k", "role": "editor"}, headers=owner.headers
    )
    as_key = (await client.get("/api/v1/whoami", headers={"X-API-Key": key.json()["secret"]})).json()
    assert as_key["org_id"] == org_id and as_key["role"] == "editor" and as_key["user_id"] is None
