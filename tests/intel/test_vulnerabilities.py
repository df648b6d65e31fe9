"""Vulnerabilities: CVE ids, CVSS v3/v4 scoring by the cvss library, uniqueness, filters, paging,
archive, roles and tenancy."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
from cvss import CVSS3, CVSS4

from tests.intel import test_actors as shared
from tests.intel.test_actors import Team, all_items, created, insert_project, problem_field, problem_message

VULNS = "/api/v1/vulnerabilities"
# The module shares one signed-up owner; each test works in orgs of its own.
http = shared.http
owner = shared.owner
team = shared.team

LOG4SHELL_V3 = "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:C/C:H/I:H/A:H"  # 10.0 critical
LOW_V3 = "CVSS:3.1/AV:N/AC:H/PR:L/UI:R/S:U/C:L/I:L/A:N"  # 3.7 low
HIGH_V3 = "CVSS:3.0/AV:L/AC:L/PR:L/UI:N/S:U/C:H/I:H/A:H"  # 7.8 high
LOW_V4 = "CVSS:4.0/AV:L/AC:H/AT:P/PR:H/UI:A/VC:L/VI:N/VA:N/SC:N/SI:N/SA:N"  # 1.0 low
HIGH_V4 = "CVSS:4.0/AV:N/AC:L/AT:N/PR:L/UI:N/VC:H/VI:L/VA:N/SC:N/SI:N/SA:N"  # 7.1 high


async def test_vulnerability_crud_and_cvss_scoring(http: httpx.AsyncClient, team: Team) -> None:
    h = team.h("editor")
    body = await created(
        await http.post(
            VULNS,
            json={
                "cve_id": " cve-2021-44228 ",
                # Metrics out of order: the library's normalized vector is what is stored.
                "cvss_v3_vector": "CVSS:3.1/C:H/I:H/A:H/AV:N/AC:L/PR:N/UI:N/S:C",
                "kev": True,
                "epss": 0.97,
                "published": "2021-12-10T00:00:00Z",
                "description": "Log4Shell",
            },
            headers=h,
        )
    )
    assert body["cve_id"] == "CVE-2021-44228"
    assert body["cvss_v3_vector"] == LOG4SHELL_V3
    assert body["cvss_v3_score"] == float(CVSS3(LOG4SHELL_V3).base_score) == 10.0
    assert body["severity"] == "critical"
    assert body["cvss_v4_vector"] is None and body["cvss_v4_score"] is None
    assert body["kev"] is True and body["epss"] == 0.97
    assert body["stix_id"] == f"vulnerability--{body['id']}"
    url = f"{VULNS}/{body['id']}"
    assert (await http.get(url, headers=team.h("viewer"))).json() == body

    # A v4 vector takes over the severity; clearing it gives the v3 one back.
    with_v4 = await http.patch(url, json={"cvss_v4_vector": LOW_V4}, headers=h)
    assert with_v4.status_code == 200, with_v4.text
    assert with_v4.json()["cvss_v4_score"] == float(CVSS4(LOW_V4).base_score) == 1.0
    assert with_v4.json()["severity"] == "low" and with_v4.json()["cvss_v3_score"] == 10.0
    v3_changed = await http.patch(url, json={"cvss_v3_vector": LOW_V3}, headers=h)
    assert v3_changed.json()["cvss_v3_score"] == 3.7 and v3_changed.json()["severity"] == "low"
    cleared = await http.patch(url, json={"cvss_v4_vector": None, "cvss_v3_vector": HIGH_V3}, headers=h)
    assert cleared.json()["cvss_v4_score"] is None and cleared.json()["cvss_v4_vector"] is None
    assert cleared.json()["cvss_v3_score"] == 7.8 and cleared.json()["severity"] == "high"
    untouched = await http.patch(url, json={"kev": False}, headers=h)
    assert untouched.json()["severity"] == "high" and untouched.json()["kev"] is False
    no_scores = await http.patch(url, json={"cvss_v3_vector": None}, headers=h)
    assert no_scores.json()["severity"] is None and no_scores.json()["cvss_v3_score"] is None

    # Scores and severity come from the library, never from the client.
    for field, value in (("cvss_v3_score", 1.0), ("cvss_v4_score", 1.0), ("severity", "low")):
        assert problem_field(await http.patch(url, json={field: value}, headers=h)) == field
        refused = await http.post(VULNS, json={"cve_id": "CVE-2020-0001", field: value}, headers=h)
        assert problem_field(refused) == field

    # Made by an API key (no user): only an admin may remove it.
    assert (await http.delete(url, headers=h)).status_code == 403
    assert (await http.delete(url, headers=team.h("admin"))).status_code == 204
    assert (await http.get(url, headers=h)).status_code == 404


async def test_invalid_cvss_vectors_give_the_librarys_reason(http: httpx.AsyncClient, team: Team) -> None:
    h = team.h("editor")
    cases = [
        (
            "cvss_v3_vector",
            "CVSS:3.1/AV:X/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H",
            'Unknown value "X" in field "AV:X"',
        ),
        ("cvss_v3_vector", "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H", 'Missing mandatory metrics "A"'),
        ("cvss_v3_vector", "AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", "missing mandatory prefix"),
        ("cvss_v3_vector", HIGH_V4, "missing mandatory prefix"),
        ("cvss_v4_vector", LOG4SHELL_V3, "missing mandatory prefix"),
        ("cvss_v4_vector", "CVSS:4.0/AV:N", "Missing mandatory metrics"),
    ]
    for field, vector, reason in cases:
        refused = await http.post(VULNS, json={"cve_id": "CVE-2024-0001", field: vector}, headers=h)
        assert problem_field(refused) == field, vector
        assert reason in problem_message(refused), (vector, problem_message(refused))
    kept = await created(
        await http.post(VULNS, json={"cve_id": "CVE-2024-0001", "cvss_v4_vector": HIGH_V4}, headers=h)
    )
    bad_patch = await http.patch(f"{VULNS}/{kept['id']}", json={"cvss_v4_vector": "CVSS:4.0/AV:Q"}, headers=h)
    assert problem_field(bad_patch) == "cvss_v4_vector"
    stored = (await http.get(f"{VULNS}/{kept['id']}", headers=h)).json()
    assert (
        stored["cvss_v4_vector"] == HIGH_V4
        and stored["cvss_v4_score"] == 7.1
        and stored["severity"] == "high"
    )


async def test_cve_ids_and_uniqueness(http: httpx.AsyncClient, team: Team) -> None:
    h = team.h("editor")
    for bad in (
        "CVE-21-1234",
        "CVE-2021-123",
        "2021-44228",
        "CVE-2021-44228x",
        "CVE_2021_44228",
        "CAN-2021-1234",
    ):
        refused = await http.post(VULNS, json={"cve_id": bad}, headers=h)
        assert problem_field(refused) == "cve_id", bad
        assert "CVE-YYYY-NNNN" in problem_message(refused)
    first = await created(await http.post(VULNS, json={"cve_id": "CVE-2023-4863"}, headers=h))
    long_id = await created(await http.post(VULNS, json={"cve_id": "cve-2024-1234567"}, headers=h))
    assert long_id["cve_id"] == "CVE-2024-1234567"
    assert problem_field(await http.post(VULNS, json={"cve_id": "cve-2023-4863"}, headers=h), 409) == "cve_id"
    clash = await http.patch(f"{VULNS}/{long_id['id']}", json={"cve_id": "CVE-2023-4863"}, headers=h)
    assert problem_field(clash, 409) == "cve_id"
    assert (
        await http.patch(f"{VULNS}/{first['id']}", json={"cve_id": "CVE-2023-4863"}, headers=h)
    ).status_code == 200
    await created(await http.post(VULNS, json={"cve_id": "CVE-2023-4863"}, headers=team.other))

    assert (
        problem_field(await http.post(VULNS, json={"cve_id": "CVE-2020-0002", "epss": 1.5}, headers=h))
        == "epss"
    )
    assert (
        problem_field(await http.post(VULNS, json={"cve_id": "CVE-2020-0002", "epss": -0.1}, headers=h))
        == "epss"
    )
    assert problem_field(await http.patch(f"{VULNS}/{first['id']}", json={"kev": None}, headers=h)) == "kev"
    assert (
        problem_field(await http.patch(f"{VULNS}/{first['id']}", json={"cve_id": None}, headers=h))
        == "cve_id"
    )


async def test_vulnerability_filters_sorting_and_paging(http: httpx.AsyncClient, team: Team) -> None:
    h = team.h("editor")
    specs: list[dict[str, Any]] = [
        {
            "cve_id": "CVE-2021-44228",
            "cvss_v3_vector": LOG4SHELL_V3,
            "kev": True,
            "epss": 0.97,
            "published": "2021-12-10T00:00:00Z",
            "tags": ["log4j"],
        },
        # v3 says critical, v4 says low: the v4 score and severity decide.
        {
            "cve_id": "CVE-2022-0001",
            "cvss_v3_vector": LOG4SHELL_V3,
            "cvss_v4_vector": LOW_V4,
            "epss": 0.1,
            "published": "2022-01-01T00:00:00Z",
        },
        {
            "cve_id": "CVE-2023-0002",
            "cvss_v4_vector": HIGH_V4,
            "kev": True,
            "description": "Buffer overflow in libfoo",
        },
        {
            "cve_id": "CVE-2024-0003",
            "cvss_v3_vector": HIGH_V3,
            "published": "2024-03-01T00:00:00Z",
            "tlp": "red",
        },
        {"cve_id": "CVE-2024-0004"},
    ]
    for spec in specs:
        await created(await http.post(VULNS, json=spec, headers=h))

    async def cves(**params: Any) -> list[str]:
        return [v["cve_id"] for v in await all_items(http, VULNS, h, **params)]

    assert await cves(kev="true", sort="cve_id") == ["CVE-2021-44228", "CVE-2023-0002"]
    assert await cves(kev="false", sort="cve_id") == ["CVE-2022-0001", "CVE-2024-0003", "CVE-2024-0004"]
    assert await cves(min_cvss=7, sort="cve_id") == ["CVE-2021-44228", "CVE-2023-0002", "CVE-2024-0003"]
    assert await cves(min_cvss=7.5, sort="cve_id") == ["CVE-2021-44228", "CVE-2024-0003"]
    assert await cves(severity="high", sort="cve_id") == ["CVE-2023-0002", "CVE-2024-0003"]
    assert await cves(severity="low") == ["CVE-2022-0001"]
    assert await cves(q="44228") == ["CVE-2021-44228"]
    assert await cves(q="cve-2024", sort="cve_id") == ["CVE-2024-0003", "CVE-2024-0004"]
    assert await cves(q="LIBFOO") == ["CVE-2023-0002"]
    assert await cves(tag="LOG4J") == ["CVE-2021-44228"]
    assert await cves(tlp="red") == ["CVE-2024-0003"]
    assert await cves(kev="true", min_cvss=8) == ["CVE-2021-44228"]

    # Missing values sort lowest: last when descending.
    by_v3 = await cves(sort="-cvss_v3_score,cve_id", limit=2)
    assert by_v3 == ["CVE-2021-44228", "CVE-2022-0001", "CVE-2024-0003", "CVE-2023-0002", "CVE-2024-0004"]
    by_epss = await cves(sort="-epss,-cve_id", limit=2)
    assert by_epss == ["CVE-2021-44228", "CVE-2022-0001", "CVE-2024-0004", "CVE-2024-0003", "CVE-2023-0002"]
    by_published = await cves(sort="published,cve_id", limit=3)
    assert by_published == [
        "CVE-2023-0002",
        "CVE-2024-0004",
        "CVE-2021-44228",
        "CVE-2022-0001",
        "CVE-2024-0003",
    ]
    assert await cves(sort="-cve_id", limit=1) == sorted(await cves(sort="cve_id"), reverse=True)

    for params in ({"sort": "-score"}, {"sort": "severity"}):
        assert problem_field(await http.get(VULNS, params=params, headers=h)) == "sort"
    assert (await http.get(VULNS, params={"min_cvss": 11}, headers=h)).status_code == 422
    assert (await http.get(VULNS, params={"severity": "urgent"}, headers=h)).status_code == 422


async def test_vulnerability_roles_archive_and_tenancy(http: httpx.AsyncClient, app: Any, team: Team) -> None:
    owned = await created(await http.post(VULNS, json={"cve_id": "CVE-2019-0708"}, headers=team.h()))
    url = f"{VULNS}/{owned['id']}"
    assert (
        await http.post(VULNS, json={"cve_id": "CVE-2019-0001"}, headers=team.h("viewer"))
    ).status_code == 403
    assert (await http.patch(url, json={"kev": True}, headers=team.h("viewer"))).status_code == 403
    assert (await http.patch(url, json={"kev": True}, headers=team.h("editor"))).status_code == 200
    for action in ("archive", "unarchive"):
        assert (await http.post(f"{url}/{action}", headers=team.h("editor"))).status_code == 403
    assert (await http.delete(url, headers=team.h("editor"))).status_code == 403

    archived = await http.post(f"{url}/archive", headers=team.h("admin"))
    assert archived.status_code == 200 and archived.json()["archived_at"] is not None
    assert (await http.get(VULNS, headers=team.h("viewer"))).json()["items"] == []
    shelved = await http.get(VULNS, params={"archived": True}, headers=team.h("viewer"))
    assert [v["id"] for v in shelved.json()["items"]] == [owned["id"]]
    assert (await http.post(f"{url}/unarchive", headers=team.h())).json()["archived_at"] is None

    their_project = await insert_project(app, team.other_org, "theirs")
    refused = await http.post(
        VULNS, json={"cve_id": "CVE-2019-0002", "project_id": their_project}, headers=team.h()
    )
    # Another org's project names nothing in this one: 404, like a random id.
    assert problem_field(refused, 404) == "project_id"
    mine = await insert_project(app, team.org, "mine")
    placed = await created(
        await http.post(VULNS, json={"cve_id": "CVE-2019-0002", "project_id": mine}, headers=team.h())
    )
    assert placed["project_id"] == mine
    assert [
        v["id"]
        for v in (await http.get(VULNS, params={"project_id": mine}, headers=team.h())).json()["items"]
    ] == [placed["id"]]
    theirs = await created(await http.post(VULNS, json={"cve_id": "CVE-2019-0708"}, headers=team.other))
    for method in ("GET", "DELETE", "PATCH"):
        kwargs: dict[str, Any] = {"json": {"kev": True}} if method == "PATCH" else {}
        crossed = await http.request(method, f"{VULNS}/{theirs['id']}", headers=team.h(), **kwargs)
        random = await http.request(method, f"{VULNS}/{uuid.uuid4()}", headers=team.h(), **kwargs)
        assert crossed.status_code == random.status_code == 404
    assert (await http.get(f"{VULNS}/{theirs['id']}", headers=team.other)).json()["kev"] is False

    assert (await http.delete(url, headers=team.h("admin"))).status_code == 204
