"""Projects: CRUD, archive, tags, stats, objects filed under them."""

from __future__ import annotations

import httpx

from tests.conftest import add_member, create_org, sign_up

PRJ = "/api/v1/projects"


async def test_project_lifecycle_stats_and_objects(client: httpx.AsyncClient) -> None:
    owner = await sign_up(client, "pm@example.com")
    org = await create_org(owner, "projects")
    h = owner.in_org(org)
    created = await client.post(PRJ, json={"name": "Op Nightfall", "tags": ["APT", "apt"]}, headers=h)
    assert created.status_code == 201, created.text
    project = created.json()
    assert project["tags"] == ["apt"]
    assert created.headers["location"] == f"{PRJ}/{project['id']}"
    assert (await client.post(PRJ, json={"name": "Op Nightfall"}, headers=h)).status_code == 409
    items = [
        {"value": "10.20.0.1", "project_id": project["id"], "score": 90, "classification": "malicious"},
        {"value": "nightfall.example", "project_id": project["id"], "score": 30},
        {"value": "unfiled.example"},
    ]
    await client.post("/api/v1/indicators/bulk", json={"items": items}, headers=h)
    stats = (await client.get(f"{PRJ}/{project['id']}/stats", headers=h)).json()
    assert stats["indicators"] == 2
    assert stats["by_type"] == {"ipv4": 1, "domain": 1}
    assert stats["by_classification"] == {"malicious": 1, "unknown": 1}
    assert stats["objects"]["indicator"] == 2 and stats["last_activity"] is not None
    objects = (await client.get(f"{PRJ}/{project['id']}/objects", params={"limit": 1}, headers=h)).json()
    assert len(objects["items"]) == 1 and objects["next_cursor"]
    rest = (
        await client.get(
            f"{PRJ}/{project['id']}/objects", params={"cursor": objects["next_cursor"]}, headers=h
        )
    ).json()
    labels = {objects["items"][0]["label"], *[o["label"] for o in rest["items"]]}
    assert labels == {"10.20.0.1", "nightfall.example"}
    bad_kind = await client.get(f"{PRJ}/{project['id']}/objects", params={"kind": "nope"}, headers=h)
    assert bad_kind.status_code == 422 and bad_kind.json()["errors"][0]["field"] == "kind"
    patched = await client.patch(f"{PRJ}/{project['id']}", json={"description": "tracked"}, headers=h)
    assert patched.json()["description"] == "tracked"
    assert (await client.post(f"{PRJ}/{project['id']}/archive", headers=h)).json()["archived"] is True
    assert (await client.get(PRJ, headers=h)).json()["items"] == []
    assert [
        p["name"] for p in (await client.get(PRJ, params={"archived": True}, headers=h)).json()["items"]
    ] == ["Op Nightfall"]
    assert (await client.post(f"{PRJ}/{project['id']}/unarchive", headers=h)).json()["archived"] is False
    assert [p["name"] for p in (await client.get(PRJ, params={"tag": "apt"}, headers=h)).json()["items"]] == [
        "Op Nightfall"
    ]
    assert (await client.delete(f"{PRJ}/{project['id']}", headers=h)).status_code == 204
    unfiled = (await client.get("/api/v1/indicators", params={"type": "ipv4"}, headers=h)).json()["items"]
    assert unfiled[0]["project_id"] is None


async def test_project_rules(client: httpx.AsyncClient) -> None:
    owner = await sign_up(client, "pm2@example.com")
    editor = await sign_up(client, "pe2@example.com")
    viewer = await sign_up(client, "pv2@example.com")
    org = await create_org(owner, "projects2")
    await add_member(owner, org, editor, "editor")
    await add_member(owner, org, viewer, "viewer")
    other = await sign_up(client, "po2@example.com")
    other_org = await create_org(other, "projects2b")
    foreign_ws = (
        await client.post(
            f"/api/v1/organizations/{other_org}/workspaces", json={"name": "x"}, headers=other.headers
        )
    ).json()["id"]
    refused = await client.post(
        PRJ, json={"name": "X", "workspace_id": foreign_ws}, headers=owner.in_org(org)
    )
    assert refused.status_code == 404 and refused.json()["errors"][0]["field"] == "workspace_id"
    assert (await client.post(PRJ, json={"name": "V"}, headers=viewer.in_org(org))).status_code == 403
    owned = (await client.post(PRJ, json={"name": "Owner's"}, headers=owner.in_org(org))).json()
    assert (await client.delete(f"{PRJ}/{owned['id']}", headers=editor.in_org(org))).status_code == 403
    assert (await client.get(f"{PRJ}/{owned['id']}", headers=other.in_org(other_org))).status_code == 404
    foreign = await client.post(
        "/api/v1/indicators",
        json={"value": "1.2.3.4", "project_id": owned["id"]},
        headers=other.in_org(other_org),
    )
    assert foreign.status_code == 422 and foreign.json()["errors"][0]["field"] == "project_id"
