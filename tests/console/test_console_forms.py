"""Console forms through the real app (no browser): typed fields reach the services, errors keep the form.

Browsers post text only and the services' schemas refuse "85" where an integer is expected, so these
posts are exactly what a browser sends.
"""

from __future__ import annotations

import httpx

from tests.conftest import create_org, sign_up
from tests.console.test_console import console_login, csrf_of


async def test_quick_add_with_every_field_stores_the_typed_values(client: httpx.AsyncClient) -> None:
    owner = await sign_up(client, "quick@example.com")
    org = await create_org(owner, "quick-org")
    await console_login(client, "quick@example.com")
    token = csrf_of((await client.get(f"/o/{org}/indicators")).text)
    added = await client.post(
        f"/o/{org}/indicators",
        data={
            "value": "185.220.101[.]9",
            "classification": "malicious",
            "score": "85",
            "tags": "tor, exit",
            "csrf_token": token,
        },
    )
    assert added.status_code == 303, added.text
    listed = (await client.get("/api/v1/indicators", headers=owner.in_org(org))).json()["items"]
    assert [(i["value"], i["classification"], i["score"], i["tags"]) for i in listed] == [
        ("185.220.101.9", "malicious", 85, ["tor", "exit"])
    ]


async def test_a_refused_quick_add_names_the_field_and_keeps_the_form_and_the_list(
    client: httpx.AsyncClient,
) -> None:
    owner = await sign_up(client, "quick-bad@example.com")
    org = await create_org(owner, "quick-bad-org")
    await client.post("/api/v1/indicators", json={"value": "kept.example"}, headers=owner.in_org(org))
    await console_login(client, "quick-bad@example.com")
    token = csrf_of((await client.get(f"/o/{org}/indicators")).text)
    for score, message in (("abc", "expected a whole number"), ("101", "less than or equal to 100")):
        refused = await client.post(
            f"/o/{org}/indicators",
            data={
                "value": "evil.example",
                "classification": "suspicious",
                "score": score,
                "tags": "a, b",
                "csrf_token": token,
            },
        )
        assert refused.status_code == 422
        html = refused.text
        assert 'id="err-score"' in html and message in html
        assert f'name="score" type="number" min="0" max="100" step="1" class="short" value="{score}"' in html
        assert "<option selected>suspicious</option>" in html and 'name="tags" value="a, b"' in html
        assert "kept.example" in html and "No indicators match." not in html
    listed = (await client.get("/api/v1/indicators", headers=owner.in_org(org))).json()["items"]
    assert [i["value"] for i in listed] == ["kept.example"]


async def test_edit_forms_save_only_what_changed(client: httpx.AsyncClient) -> None:
    owner = await sign_up(client, "edit@example.com")
    org = await create_org(owner, "edit-org")
    h = owner.in_org(org)
    actor = await client.post(
        "/api/v1/threat-actors",
        json={"name": "APT Edit", "first_seen": "2024-05-06T13:14:15Z", "country": "RU"},
        headers=h,
    )
    actor_id = actor.json()["id"]
    await console_login(client, "edit@example.com")
    page = await client.get(f"/o/{org}/actors/{actor_id}")
    # The form shows the date of first_seen; saving it untouched must keep the time of day.
    assert 'name="first_seen" type="date" value="2024-05-06"' in page.text
    saved = await client.post(
        f"/o/{org}/actors/{actor_id}",
        data={
            "name": "APT Edit",
            "first_seen": "2024-05-06",
            "country": "",
            "tlp": "amber",
            "csrf_token": csrf_of(page.text),
        },
    )
    assert saved.status_code == 303, saved.text
    got = (await client.get(f"/api/v1/threat-actors/{actor_id}", headers=h)).json()
    assert got["first_seen"].startswith("2024-05-06T13:14:15")
    assert got["country"] is None  # a field blanked on an edit form is cleared


async def test_numbers_checkboxes_and_dates_of_context_forms(client: httpx.AsyncClient) -> None:
    owner = await sign_up(client, "vuln@example.com")
    org = await create_org(owner, "vuln-org")
    await console_login(client, "vuln@example.com")
    token = csrf_of((await client.get(f"/o/{org}/vulnerabilities")).text)
    created = await client.post(
        f"/o/{org}/vulnerabilities",
        data={
            "cve_id": "CVE-2024-3400",
            "kev": "1",
            "epss": "0.97",
            "published": "2024-04-12",
            "tlp": "clear",
        },
        headers={"x-csrf-token": token},
    )
    assert created.status_code == 303, created.text
    vuln_id = created.headers["location"].rsplit("/", 1)[-1]
    got = (await client.get(f"/api/v1/vulnerabilities/{vuln_id}", headers=owner.in_org(org))).json()
    assert (got["kev"], got["epss"], got["published"][:19]) == (True, 0.97, "2024-04-12T00:00:00")
    bad = await client.post(
        f"/o/{org}/vulnerabilities/{vuln_id}",
        data={"cve_id": "CVE-2024-3400", "epss": "lots", "published": "12/04/2024", "tlp": "clear"},
        headers={"x-csrf-token": token},
    )
    assert bad.status_code == 422
    assert 'id="err-epss"' in bad.text and 'id="err-published"' in bad.text
    assert 'value="lots"' in bad.text and 'value="12/04/2024"' in bad.text


async def test_every_page_links_an_icon_that_is_served(client: httpx.AsyncClient) -> None:
    icon = await client.get("/favicon.ico")
    assert icon.status_code == 200 and icon.headers["content-type"] == "image/x-icon"
    assert icon.content[:4] == b"\x00\x00\x01\x00"
    login = await client.get("/login")
    assert '<link rel="icon" href="/static/favicon.svg" type="image/svg+xml">' in login.text
    svg = await client.get("/static/favicon.svg")
    assert svg.status_code == 200 and svg.headers["content-type"].startswith("image/svg+xml")
