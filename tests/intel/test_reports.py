"""Reports: markdown bodies, object references checked in the org and named on the way out, filters,
paging, archive, roles, tenancy and the ATT&CK Navigator layer."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from tests.intel import test_actors as shared
from tests.intel.test_actors import (
    Team,
    all_items,
    assert_layer_shape,
    created,
    insert_project,
    join_as_editor,
    problem_field,
    problem_message,
)

REPORTS = "/api/v1/reports"
# The module shares one signed-up owner; each test works in orgs of its own.
http = shared.http
owner = shared.owner
team = shared.team

BODY = "# Findings\n\n<script>alert(1)</script>\n\n| a | b |\n|---|---|\n\n```\ncode\n```\n  trailing  \n"


async def _objects(http: httpx.AsyncClient, headers: dict[str, str]) -> dict[str, dict[str, Any]]:
    """One object of every referable kind, created in the org the headers act in."""
    indicator = await http.post("/api/v1/indicators", json={"value": "198.51.100.7"}, headers=headers)
    assert indicator.status_code == 201, indicator.text
    return {
        "indicator": indicator.json(),
        "threat-actor": await created(
            await http.post("/api/v1/threat-actors", json={"name": "APT-X"}, headers=headers)
        ),
        "campaign": await created(
            await http.post("/api/v1/campaigns", json={"name": "Op Y"}, headers=headers)
        ),
        "vulnerability": await created(
            await http.post("/api/v1/vulnerabilities", json={"cve_id": "CVE-2024-3400"}, headers=headers)
        ),
        "report": await created(await http.post(REPORTS, json={"title": "Earlier report"}, headers=headers)),
    }


async def test_report_crud_with_named_references(http: httpx.AsyncClient, team: Team) -> None:
    h = team.h("editor")
    objects = await _objects(http, h)
    refs = [{"type": kind, "id": obj["id"]} for kind, obj in objects.items()]
    body = await created(
        await http.post(
            REPORTS,
            json={
                "title": "Edge devices under attack",
                "body": BODY,
                "published": "2024-04-12T08:00:00+02:00",
                "attack_techniques": ["T1190", "t1059.004"],
                "object_refs": [*refs, refs[1]],  # the duplicate is dropped
                "tags": ["Edge"],
                "tlp": "amber+strict",
            },
            headers=h,
        )
    )
    assert body["body"] == BODY  # markdown stored byte for byte, never rendered or sanitized here
    assert body["published"].startswith("2024-04-12T06:00:00")
    assert body["attack_techniques"] == ["T1190", "T1059.004"]
    assert body["tlp"] == "amber+strict" and body["tags"] == ["edge"]
    assert body["stix_id"] == f"report--{body['id']}"
    expected = [
        {"type": "indicator", "id": objects["indicator"]["id"], "name": "198.51.100.7"},
        {"type": "threat-actor", "id": objects["threat-actor"]["id"], "name": "APT-X"},
        {"type": "campaign", "id": objects["campaign"]["id"], "name": "Op Y"},
        {"type": "vulnerability", "id": objects["vulnerability"]["id"], "name": "CVE-2024-3400"},
        {"type": "report", "id": objects["report"]["id"], "name": "Earlier report"},
    ]
    assert body["object_refs"] == expected
    url = f"{REPORTS}/{body['id']}"
    got = (await http.get(url, headers=team.h("viewer"))).json()
    assert got == body
    listed = await http.get(REPORTS, params={"q": "edge"}, headers=h)
    assert listed.json()["items"] == [body]

    # Renaming a referenced object shows at once; deleting it leaves the reference unnamed.
    actor_url = f"/api/v1/threat-actors/{objects['threat-actor']['id']}"
    assert (await http.patch(actor_url, json={"name": "APT-Z"}, headers=h)).status_code == 200
    assert (await http.delete(actor_url, headers=team.h("admin"))).status_code == 204
    after = (await http.get(url, headers=h)).json()["object_refs"]
    assert after[1] == {"type": "threat-actor", "id": objects["threat-actor"]["id"], "name": None}

    patched = await http.patch(
        url, json={"object_refs": [refs[2]], "title": "Renamed", "body": ""}, headers=h
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["object_refs"] == [expected[2]]
    assert patched.json()["title"] == "Renamed" and patched.json()["body"] == ""
    itself = await http.patch(
        url, json={"object_refs": [refs[0], {"type": "report", "id": body["id"]}]}, headers=h
    )
    assert problem_field(itself) == "object_refs[1]" and "itself" in problem_message(itself)
    assert problem_field(await http.patch(url, json={"title": None}, headers=h)) == "title"
    assert problem_field(await http.patch(url, json={"object_refs": None}, headers=h)) == "object_refs"

    assert (await http.delete(url, headers=team.h("admin"))).status_code == 204
    assert (await http.get(url, headers=h)).status_code == 404


async def test_references_must_be_in_the_org(http: httpx.AsyncClient, app: Any, team: Team) -> None:
    mine = await _objects(http, team.h())
    theirs = await _objects(http, team.other)
    own_ref = {"type": "campaign", "id": mine["campaign"]["id"]}
    for kind, obj in theirs.items():
        random_id = str(uuid.uuid4())
        crossed = await http.post(
            REPORTS,
            json={"title": "r", "object_refs": [own_ref, {"type": kind, "id": obj["id"]}]},
            headers=team.h(),
        )
        random = await http.post(
            REPORTS,
            json={"title": "r", "object_refs": [own_ref, {"type": kind, "id": random_id}]},
            headers=team.h(),
        )
        # A reference that names nothing here is a 404, as an id in the path.
        assert problem_field(crossed, 404) == problem_field(random, 404) == "object_refs[1]", kind
        # The same words for another org's object as for an id that names nothing.
        assert problem_message(crossed) == problem_message(random) == f"no such {kind} in this organization"
    # The right id under the wrong type is no reference either.
    wrong_type = await http.post(
        REPORTS,
        json={"title": "r", "object_refs": [{"type": "campaign", "id": mine["threat-actor"]["id"]}]},
        headers=team.h(),
    )
    assert problem_field(wrong_type, 404) == "object_refs[0]"
    unknown_kind = await http.post(
        REPORTS,
        json={"title": "r", "object_refs": [{"type": "malware", "id": str(uuid.uuid4())}]},
        headers=team.h(),
    )
    assert problem_field(unknown_kind) == "object_refs.0.type"
    report = await created(
        await http.post(REPORTS, json={"title": "ok", "object_refs": [own_ref]}, headers=team.h())
    )
    patched = await http.patch(
        f"{REPORTS}/{report['id']}",
        json={"object_refs": [{"type": "report", "id": theirs["report"]["id"]}]},
        headers=team.h(),
    )
    assert problem_field(patched, 404) == "object_refs[0]"
    assert (await http.get(f"{REPORTS}/{report['id']}", headers=team.h())).json()["object_refs"][0][
        "name"
    ] == "Op Y"
    their_project = await insert_project(app, team.other_org, "p")
    assert problem_field(
        await http.post(REPORTS, json={"title": "r", "project_id": their_project}, headers=team.h()), 404
    ) == ("project_id")
    for method in ("GET", "DELETE", "PATCH"):
        kwargs: dict[str, Any] = {"json": {"title": "x"}} if method == "PATCH" else {}
        crossed_get = await http.request(
            method, f"{REPORTS}/{theirs['report']['id']}", headers=team.h(), **kwargs
        )
        assert crossed_get.status_code == 404
    crossed_layer = await http.get(f"{REPORTS}/{theirs['report']['id']}/attack-layer", headers=team.h())
    assert crossed_layer.status_code == 404


async def test_report_filters_sorting_and_paging(http: httpx.AsyncClient, team: Team) -> None:
    h = team.h("editor")
    specs: list[dict[str, Any]] = [
        {"title": "Q1 summary", "published": "2024-01-15T00:00:00Z", "tags": ["quarterly"]},
        {"title": "Q2 summary", "published": "2024-04-15T00:00:00Z", "tags": ["quarterly"], "tlp": "green"},
        {"title": "Flash: wiper", "published": "2024-04-01T00:00:00Z", "description": "Destructive MALWARE"},
        {"title": "Draft", "description": "not out yet"},
    ]
    for spec in specs:
        await created(await http.post(REPORTS, json=spec, headers=h))

    async def titles(**params: Any) -> list[str]:
        return [r["title"] for r in await all_items(http, REPORTS, h, **params)]

    window = {"published_after": "2024-04-01T00:00:00Z", "published_before": "2024-04-15T00:00:00Z"}
    assert await titles(**window) == ["Flash: wiper"]  # after inclusive, before exclusive
    assert await titles(published_after="2024-04-01T00:00:00Z", sort="title") == [
        "Flash: wiper",
        "Q2 summary",
    ]
    assert await titles(published_before="2024-02-01T00:00:00+00:00") == ["Q1 summary"]
    assert await titles(q="SUMMARY", sort="title") == ["Q1 summary", "Q2 summary"]
    assert await titles(q="malware") == ["Flash: wiper"]
    assert await titles(tag="quarterly", tlp="green") == ["Q2 summary"]
    assert await titles(sort="-published", limit=1) == ["Q2 summary", "Flash: wiper", "Q1 summary", "Draft"]
    assert await titles(sort="published,title", limit=3) == [
        "Draft",
        "Q1 summary",
        "Flash: wiper",
        "Q2 summary",
    ]
    assert await titles(sort="-title", limit=2) == ["Q2 summary", "Q1 summary", "Flash: wiper", "Draft"]
    assert problem_field(await http.get(REPORTS, params={"sort": "body"}, headers=h)) == "sort"
    # Titles too long for a cursor of values still page (the cursor then points at the row).
    for letter in "cab":
        await created(
            await http.post(REPORTS, json={"title": "Ω" * 499 + letter, "tags": ["long"]}, headers=h)
        )
    long_pages = await all_items(http, REPORTS, h, tag="long", sort="-title", limit=1)
    assert [r["title"][-1] for r in long_pages] == ["c", "b", "a"]
    naive = await http.get(REPORTS, params={"published_after": "2024-01-01T00:00:00"}, headers=h)
    assert naive.status_code == 422


async def test_report_roles_archive_and_layer(http: httpx.AsyncClient, team: Team) -> None:
    editor = await join_as_editor(http, team)
    mine = editor.in_org(team.org)
    report = await created(
        await http.post(
            REPORTS,
            json={"title": "Hunt", "attack_techniques": ["T1003.001", "T1003.001", "T1021"]},
            headers=mine,
        )
    )
    url = f"{REPORTS}/{report['id']}"
    assert report["attack_techniques"] == ["T1003.001", "T1021"]
    assert (await http.post(REPORTS, json={"title": "v"}, headers=team.h("viewer"))).status_code == 403
    assert (await http.post(f"{url}/archive", headers=team.h("editor"))).status_code == 403
    assert (await http.delete(url, headers=team.h("editor"))).status_code == 403
    assert (await http.post(f"{url}/archive", headers=mine)).status_code == 200
    assert (await http.get(REPORTS, headers=mine)).json()["items"] == []
    assert (await http.post(f"{url}/unarchive", headers=mine)).json()["archived_at"] is None

    doc = (await http.get(f"{url}/attack-layer", headers=team.h("viewer"))).json()
    assert_layer_shape(doc)
    assert doc["name"] == "Hunt" and "report Hunt" in doc["description"]
    assert [(t["techniqueID"], t["score"]) for t in doc["techniques"]] == [
        ("T1003", 0),
        ("T1003.001", 1),
        ("T1021", 1),
    ]
    assert doc["techniques"][0]["showSubtechniques"] is True

    assert (await http.delete(url, headers=mine)).status_code == 204
