"""TAXII 2.1 server, driven by the OASIS taxii2-client against a real server process."""
# ruff: noqa: ASYNC210 - taxii2-client is synchronous; the server under test is another process

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
import requests
from taxii2client.exceptions import TAXIIServiceException
from taxii2client.v21 import ApiRoot, Collection, Server, as_pages

from tests.conftest import Actor, create_org, sign_up

TAXII = "application/taxii+json;version=2.1"


async def _key(owner: Actor, org: str, role: str) -> str:
    response = await owner.http.post(
        f"/api/v1/organizations/{org}/api-keys",
        json={"name": f"taxii-{role}", "role": role},
        headers=owner.headers,
    )
    assert response.status_code == 201, response.text
    return str(response.json()["secret"])


async def _collection(owner: Actor, org: str, body: dict[str, Any]) -> dict[str, Any]:
    response = await owner.http.post("/api/v1/taxii-collections", json=body, headers=owner.in_org(org))
    assert response.status_code == 201, response.text
    return dict(response.json())


async def _seed(client: httpx.AsyncClient) -> dict[str, Any]:
    owner = await sign_up(client, "taxii-owner@example.com")
    org = await create_org(owner, "taxii-org", "Taxii Org")
    project = (await client.post("/api/v1/projects", json={"name": "Feed"}, headers=owner.in_org(org))).json()
    items = [
        {"value": f"host{n}.taxii.example.com", "tags": ["apt"] if n % 3 == 0 else ["crime"]}
        for n in range(25)
    ]
    items += [{"value": f"198.51.100.{n}", "tlp": "red" if n % 2 else "green"} for n in range(1, 11)]
    bulk = await client.post("/api/v1/indicators/bulk", json={"items": items}, headers=owner.in_org(org))
    assert bulk.json()["created"] == 35, bulk.text
    world = {
        "owner": owner,
        "org": org,
        "project": project["id"],
        "viewer_key": await _key(owner, org, "viewer"),
        "editor_key": await _key(owner, org, "editor"),
        "all": await _collection(owner, org, {"title": "Everything", "description": "all live indicators"}),
        "apt_domains": await _collection(
            owner, org, {"title": "APT domains", "filter": {"tags": ["apt"], "types": ["domain"]}}
        ),
        "green": await _collection(owner, org, {"title": "Shareable", "filter": {"tlp_max": "green"}}),
        "inbox": await _collection(
            owner,
            org,
            {"title": "Inbox", "filter": {"project_id": project["id"]}, "can_read": True, "can_write": True},
        ),
    }
    return world


def _indicator(value: str) -> dict[str, Any]:
    return {
        "type": "indicator",
        "spec_version": "2.1",
        "id": f"indicator--{uuid.uuid4()}",
        "created": "2025-01-02T03:04:05.000Z",
        "modified": "2025-01-02T03:04:05.000Z",
        "name": value,
        "pattern": f"[domain-name:value = '{value}']",
        "pattern_type": "stix",
        "valid_from": "2025-01-02T03:04:05Z",
    }


async def test_taxii_client_discovers_reads_pages_and_writes(
    client: httpx.AsyncClient, live_server: str
) -> None:
    """Discovery, API root, collections, paged objects, filters, manifest, object, versions, add + status."""
    w = await _seed(client)
    server = Server(f"{live_server}/taxii2/", user="siem", password=w["viewer_key"])
    assert server.title == "RaptorFlow TAXII 2.1"
    root_url = f"{live_server}/taxii2/taxii-org/"
    assert [r.url for r in server.api_roots] == [root_url] and server.default.url == root_url
    root = server.default
    assert root.title == "Taxii Org" and TAXII in root.versions
    assert {c.title for c in root.collections} == {"Everything", "APT domains", "Shareable", "Inbox"}

    everything = Collection(f"{root_url}collections/{w['all']['id']}/", user="x", password=w["viewer_key"])
    pages = list(as_pages(everything.get_objects, per_request=10))
    assert [len(p.get("objects", [])) for p in pages] == [10, 10, 10, 5]
    objects = [o for p in pages for o in p["objects"]]
    assert len({o["id"] for o in objects}) == 35 and all(o["type"] == "indicator" for o in objects)
    assert not pages[-1]["more"] and all(p["more"] for p in pages[:-1])

    apt = Collection(f"{root_url}collections/{w['apt_domains']['id']}/", user="x", password=w["viewer_key"])
    names = sorted(o["name"] for o in apt.get_objects()["objects"])
    assert names == sorted(f"host{n}.taxii.example.com" for n in range(0, 25, 3))
    shareable = Collection(f"{root_url}collections/{w['green']['id']}/", user="x", password=w["viewer_key"])
    # Domains default to TLP:AMBER, odd IPs are RED: only the five GREEN IPs are shareable.
    assert sorted(o["name"] for o in shareable.get_objects()["objects"]) == sorted(
        f"198.51.100.{n}" for n in range(2, 11, 2)
    )

    first = objects[0]
    assert everything.get_object(first["id"])["objects"] == [first]
    assert everything.get_objects(id=first["id"])["objects"] == [first]
    assert everything.get_objects(type="malware").get("objects") is None
    assert everything.get_objects(spec_version="2.0").get("objects") is None
    assert everything.object_versions(first["id"])["versions"] == [first["modified"]]
    assert everything.get_objects(version=first["modified"], id=first["id"])["objects"] == [first]
    manifest = everything.get_manifest(limit=5)
    assert [m["id"] for m in manifest["objects"]] == [o["id"] for o in objects[:5]]
    assert manifest["objects"][0]["media_type"] == "application/stix+json;version=2.1" and manifest["more"]

    # added_after and the date-added headers.
    raw = requests.get(
        f"{root_url}collections/{w['all']['id']}/objects/",
        params={"limit": 3},
        auth=("x", w["viewer_key"]),
        headers={"Accept": TAXII},
        timeout=10,
    )
    assert raw.headers["content-type"] == TAXII
    last_added = raw.headers["X-TAXII-Date-Added-Last"]
    assert raw.headers["X-TAXII-Date-Added-First"] <= last_added
    # The seed was one bulk insert (one timestamp): only what is added afterwards is "added after".
    late = await client.post(
        "/api/v1/indicators", json={"value": "late.taxii.example.com"}, headers=w["owner"].in_org(w["org"])
    )
    assert late.status_code == 201
    later = everything.get_objects(added_after=last_added)["objects"]
    assert [o["name"] for o in later] == ["late.taxii.example.com"]

    # Writing: a viewer key may not; an editor key imports and gets a status resource.
    inbox_url = f"{root_url}collections/{w['inbox']['id']}/"
    new = [
        _indicator("inbox-one.example.org"),
        _indicator("inbox-two.example.org"),
        {"type": "indicator", "id": "x"},
    ]
    malware = {
        "type": "malware",
        "spec_version": "2.1",
        "id": f"malware--{uuid.uuid4()}",
        "created": "2025-01-02T03:04:05.000Z",
        "modified": "2025-01-02T03:04:05.000Z",
        "name": "InboxLoader",
        "is_family": True,
    }
    with pytest.raises(requests.HTTPError) as refused:
        Collection(inbox_url, user="x", password=w["viewer_key"]).add_objects({"objects": new})
    assert refused.value.response.status_code == 403
    assert refused.value.response.headers["content-type"] == TAXII
    writer = Collection(inbox_url, user="x", password=w["editor_key"])
    status = writer.add_objects({"objects": [*new, malware]})
    assert status.status == "complete" and status.total_count == 4
    assert status.success_count == 3 and status.failure_count == 1
    assert status.failures[0]["id"] == "x" and "id" in status.failures[0]["message"]
    status.refresh()
    assert status.success_count == 3
    inbox = {o["id"]: o for o in writer.get_objects()["objects"]}
    assert {new[0]["id"], new[1]["id"], malware["id"]} <= set(inbox)
    assert inbox[malware["id"]] == malware
    indicators = (
        await client.get(
            "/api/v1/indicators", params={"project_id": w["project"]}, headers=w["owner"].in_org(w["org"])
        )
    ).json()
    assert sorted(i["value"] for i in indicators["items"]) == [
        "inbox-one.example.org",
        "inbox-two.example.org",
    ]


async def test_bearer_key_and_unknown_or_foreign_roots(client: httpx.AsyncClient, live_server: str) -> None:
    """Bearer works like Basic; another org's slug answers exactly like a slug that does not exist."""
    w = await _seed(client)
    other = await sign_up(client, "taxii-other@example.com")
    await create_org(other, "taxii-other")
    headers = {"Authorization": f"Bearer {w['viewer_key']}", "Accept": TAXII}
    ok = requests.get(f"{live_server}/taxii2/taxii-org/collections/", headers=headers, timeout=10)
    assert ok.status_code == 200 and len(ok.json()["collections"]) == 4
    foreign = requests.get(f"{live_server}/taxii2/taxii-other/collections/", headers=headers, timeout=10)
    missing = requests.get(f"{live_server}/taxii2/no-such-org/collections/", headers=headers, timeout=10)
    assert foreign.status_code == missing.status_code == 404
    assert foreign.json() == missing.json() and foreign.headers["content-type"] == TAXII
    assert set(foreign.json()) >= {"title", "http_status"}
    with pytest.raises(requests.HTTPError) as denied:
        ApiRoot(f"{live_server}/taxii2/taxii-org/", user="x", password="rf_not_a_key").refresh()
    assert denied.value.response.status_code == 401
    bad_accept = requests.get(
        f"{live_server}/taxii2/taxii-org/", headers={**headers, "Accept": "text/html"}, timeout=10
    )
    assert bad_accept.status_code == 406
    unread = await client.post(
        "/api/v1/taxii-collections",
        json={"title": "Write only", "can_read": False, "can_write": True},
        headers=w["owner"].in_org(w["org"]),
    )
    collection = Collection(
        f"{live_server}/taxii2/taxii-org/collections/{unread.json()['id']}/",
        user="x",
        password=w["viewer_key"],
    )
    with pytest.raises((TAXIIServiceException, requests.HTTPError)):
        collection.get_objects()


async def test_collection_api_rules(client: httpx.AsyncClient) -> None:
    """Admins define collections; viewers list them; bad filters name the field; titles are unique."""
    owner = await sign_up(client, "taxii-admin@example.com")
    org = await create_org(owner, "taxii-admin")
    viewer = await sign_up(client, "taxii-viewer@example.com")
    await client.post(
        f"/api/v1/organizations/{org}/members",
        json={"email": viewer.email, "role": "viewer"},
        headers=owner.headers,
    )
    made = await _collection(owner, org, {"title": "Feed", "filter": {"types": ["IPv4"], "min_score": 70}})
    assert made["filter"] == {"types": ["ipv4"], "min_score": 70}
    assert made["url"].endswith(f"/taxii2/taxii-admin/collections/{made['id']}/")
    listed = await client.get("/api/v1/taxii-collections", headers=viewer.in_org(org))
    assert [c["title"] for c in listed.json()["items"]] == ["Feed"]
    denied = await client.post("/api/v1/taxii-collections", json={"title": "X"}, headers=viewer.in_org(org))
    assert denied.status_code == 403
    bad = await client.post(
        "/api/v1/taxii-collections",
        json={"title": "Y", "filter": {"types": ["nope"]}},
        headers=owner.in_org(org),
    )
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "filter.types"
    dup = await client.post("/api/v1/taxii-collections", json={"title": "Feed"}, headers=owner.in_org(org))
    assert dup.status_code == 409
    changed = await client.patch(
        f"/api/v1/taxii-collections/{made['id']}",
        json={"can_write": True, "filter": {}},
        headers=owner.in_org(org),
    )
    assert changed.status_code == 200 and changed.json()["can_write"] and changed.json()["filter"] == {}
    gone = await client.delete(f"/api/v1/taxii-collections/{made['id']}", headers=owner.in_org(org))
    assert gone.status_code == 204
    assert (
        await client.get(f"/api/v1/taxii-collections/{made['id']}", headers=owner.in_org(org))
    ).status_code == 404
