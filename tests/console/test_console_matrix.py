"""Every org page of the console, generated from the app's routes: the anonymous are sent to sign in,
non-members get 404 like a random id, and a viewer gets 403 wherever the permission matrix says so
(even with a valid CSRF token) — the same matrix the API enforces."""

from __future__ import annotations

import re
from typing import Any

import httpx

from raptorflow.auth.permissions import MATRIX, Permission, Role
from raptorflow.console.web import CONSOLE_PERMISSION_ATTR
from tests.conftest import add_member, create_org, sign_up
from tests.console.test_console import browser, console_login, csrf_of
from tests.test_rbac import api_routes


def console_routes(app: Any) -> list[tuple[str, str, Permission]]:
    """(METHOD, path, permission) of every console org page."""
    found = []
    for route in api_routes(app):
        calls = [d.call for d in route.dependant.dependencies]
        declared = [getattr(c, CONSOLE_PERMISSION_ATTR) for c in calls if hasattr(c, CONSOLE_PERMISSION_ATTR)]
        if declared:
            for method in sorted(route.methods):
                found.append((method, route.path_format, Permission(declared[0])))
    return found


async def test_console_pages_follow_the_permission_matrix(app: Any, client: httpx.AsyncClient) -> None:
    routes = console_routes(app)
    assert len(routes) > 25, routes
    owner = await sign_up(client, "matrix-owner@example.com")
    org = await create_org(owner, "matrix-org")
    viewer = await sign_up(client, "matrix-viewer@example.com")
    await add_member(owner, org, viewer, "viewer")
    await sign_up(client, "matrix-stranger@example.com")
    h = owner.in_org(org)
    actor = (await client.post("/api/v1/threat-actors", json={"name": "Matrix"}, headers=h)).json()["id"]
    indicator = (await client.post("/api/v1/indicators", json={"value": "matrix.example"}, headers=h)).json()[
        "id"
    ]
    project = (await client.post("/api/v1/projects", json={"name": "M"}, headers=h)).json()["id"]
    key = (
        await client.post(f"/api/v1/organizations/{org}/api-keys", json={"name": "k"}, headers=owner.headers)
    ).json()["id"]
    invited = await client.post(
        f"/api/v1/organizations/{org}/members",
        json={"email": "later@example.com", "role": "viewer"},
        headers=owner.headers,
    )
    params = {
        "org_id": org,
        "kind": "actors",
        "object_id": actor,
        "indicator_id": indicator,
        "project_id": project,
        "user_id": owner.user_id or viewer.user_id,
        "key_id": key,
        "invitation_id": invited.json()["invitation"]["id"],
    }
    imported = await client.post(
        "/api/v1/imports", json={"format": "text", "content": "192.0.2.1"}, headers=h
    )
    params["import_id"] = imported.json()["id"]
    feed = await client.post(
        "/api/v1/feeds", json={"name": "f", "kind": "text", "url": "https://lists.example/x.txt"}, headers=h
    )
    params["feed_id"] = feed.json()["id"]
    params["fmt"] = "csv"
    hook = await client.post(
        "/api/v1/webhooks",
        json={"url": "https://hooks.example.com/x", "events": ["indicator.created"]},
        headers=h,
    )
    params["webhook_id"] = hook.json()["id"]
    collection = await client.post("/api/v1/taxii-collections", json={"title": "Matrix"}, headers=h)
    params["collection_id"] = collection.json()["id"]
    params["invoice_id"] = "0190a0a0-0000-7000-8000-00000000abcd"  # refused before any lookup
    me = await client.get("/api/v1/users/me", headers=owner.headers)
    params["user_id"] = me.json()["id"]

    def url(path: str) -> str:
        return re.sub(r"\{(\w+)\}", lambda m: params[m.group(1)], path)

    failures = []
    async with browser(app) as as_viewer, browser(app) as as_stranger, browser(app) as anonymous:
        await console_login(as_viewer, "matrix-viewer@example.com")
        await console_login(as_stranger, "matrix-stranger@example.com")
        viewer_token = csrf_of((await as_viewer.get("/account")).text)
        stranger_token = csrf_of((await as_stranger.get("/account")).text)
        for method, path, permission in routes:
            target = url(path)
            anon = await anonymous.request(method, target, data={} if method == "POST" else None)
            if anon.status_code != 303 or not anon.headers["location"].startswith("/login"):
                failures.append(f"anonymous {method} {path}: {anon.status_code}")
            data = {"csrf_token": stranger_token} if method == "POST" else None
            other = await as_stranger.request(method, target, data=data)
            if other.status_code != 404:
                failures.append(f"non-member {method} {path}: {other.status_code}")
            data = {"csrf_token": viewer_token} if method == "POST" else None
            seen = await as_viewer.request(method, target, data=data)
            allowed = Role.viewer.at_least(MATRIX[permission])
            if not allowed and seen.status_code != 403:
                failures.append(f"viewer {method} {path}: {seen.status_code}, expected 403")
            if allowed and seen.status_code in (401, 403, 404):
                failures.append(f"viewer {method} {path}: {seen.status_code}, expected access")
    assert not failures, "\n".join(failures)
