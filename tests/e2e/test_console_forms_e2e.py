"""Every create and edit form of the console, filled in completely in Chromium, then checked over the API.

Browsers post text; the services take typed values (the API refuses "85" for an integer), so each
form's numbers, dates, checkboxes, lists and ids must arrive as what they mean.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import PASSWORD, Owner, Server, new_page, sign_in


async def fill(page: Any, controls: dict[str, Any]) -> None:
    """Fill controls by CSS selector: text for inputs, an option for selects, True/False for checkboxes."""
    for selector, value in controls.items():
        control = page.locator(selector)
        tag = await control.evaluate("e => e.tagName + ':' + (e.type || '')")
        if tag.startswith("SELECT"):
            await control.select_option(value)
        elif tag.endswith(":checkbox"):
            await control.set_checked(bool(value))
        else:
            await control.fill(value)


async def submit(page: Any, button: str, *, expect_path: str | None = None) -> None:
    """Press a form's button and wait for the answer (a redirect to expect_path, or the same page)."""
    await page.get_by_role("button", name=button, exact=True).click()
    if expect_path:
        await page.wait_for_url(expect_path)
    await page.wait_for_load_state()
    assert await page.locator("p.error").count() == 0, await page.locator("p.error").all_inner_texts()


@pytest.fixture(scope="session")
async def admin_api(owner: Owner, server: Server) -> AsyncIterator[httpx.AsyncClient]:
    """An admin API key created through the API-keys form with every field filled in."""
    page = owner.page
    await page.goto(owner.org_url + "/settings/api-keys")
    await fill(
        page,
        {
            "#k-name": "forms checker",
            "#k-role": "admin",
            "#k-expires": "2099-12-31",
            "#k-ips": "127.0.0.0/8, ::1",
        },
    )
    await submit(page, "Create key")
    secret = await page.locator("#secret").input_value()
    async with httpx.AsyncClient(base_url=server.url, headers={"X-API-Key": secret}) as api:
        keys = (await api.get(f"/api/v1/organizations/{owner.org_id}/api-keys")).json()["items"]
        key = next(k for k in keys if k["name"] == "forms checker")
        assert key["role"] == "admin"
        assert key["expires_at"].startswith("2099-12-31T00:00:00")
        assert key["allowed_ips"] == ["127.0.0.0/8", "::1/128"]
        yield api


async def test_indicator_quick_add_and_edit_store_every_field(
    owner: Owner, admin_api: httpx.AsyncClient
) -> None:
    page = owner.page
    await page.goto(owner.org_url + "/projects")
    await fill(page, {"#name": "Forms project", "#description": "for the edit form", "#tags": "forms"})
    await submit(page, "Create", expect_path="**/projects/*")
    project_id = page.url.rsplit("/", 1)[-1]

    await page.goto(owner.org_url + "/indicators")
    await fill(
        page,
        {
            "#qa-value": "185.220.101[.]47",
            "#qa-class": "malicious",
            "#qa-score": "85",
            "#qa-tags": "tor, exit",
        },
    )
    await submit(page, "Add", expect_path="**/indicators/*")
    indicator_id = page.url.rsplit("/", 1)[-1]
    got = (await admin_api.get(f"/api/v1/indicators/{indicator_id}")).json()
    assert (got["value"], got["classification"], got["score"], got["tags"]) == (
        "185.220.101.47",
        "malicious",
        85,
        ["tor", "exit"],
    )

    await fill(
        page,
        {
            "#f-project_id": project_id,
            "#f-classification": "suspicious",
            "#f-score": "61",
            "#f-confidence": "77",
            "#f-tlp": "green",
            "#f-tags": "tor, relay",
            "#f-attack_techniques": "T1090",
            "#f-valid_from": "2026-01-02",
            "#f-valid_until": "2027-03-04",
            "#f-description": "An exit relay seen in the campaign.",
        },
    )
    await submit(page, "Save", expect_path=f"**/indicators/{indicator_id}")
    got = (await admin_api.get(f"/api/v1/indicators/{indicator_id}")).json()
    assert got["project_id"] == project_id
    assert (got["classification"], got["score"], got["confidence"], got["tlp"]) == (
        "suspicious",
        61,
        77,
        "green",
    )
    assert got["tags"] == ["tor", "relay"] and got["attack_techniques"] == ["T1090"]
    assert got["valid_from"].startswith("2026-01-02T00:00:00")
    assert got["valid_until"].startswith("2027-03-04T00:00:00")
    assert got["description"] == "An exit relay seen in the campaign."

    # A second save with nothing changed changes nothing (no dates reset to midnight, no history).
    history = (await admin_api.get(f"/api/v1/indicators/{indicator_id}/history")).json()["items"]
    await submit(page, "Save", expect_path=f"**/indicators/{indicator_id}")
    again = (await admin_api.get(f"/api/v1/indicators/{indicator_id}/history")).json()["items"]
    assert len(again) == len(history)

    # A wrong value is named, the form keeps what was typed, the list stays.
    await page.goto(owner.org_url + "/indicators")
    await fill(
        page, {"#qa-value": "evil.example", "#qa-class": "suspicious", "#qa-score": "101", "#qa-tags": "x, y"}
    )
    # The browser would refuse 101 itself (max=100); the server must too, when it gets it anyway.
    await page.locator("form.quickadd").evaluate("form => { form.noValidate = true; }")
    await page.get_by_role("button", name="Add", exact=True).click()
    await page.wait_for_load_state()
    assert "100" in await page.locator("#err-score").inner_text()
    assert await page.locator("#qa-score").input_value() == "101"
    assert await page.locator("#qa-class").input_value() == "suspicious"
    assert await page.locator("#qa-tags").input_value() == "x, y"
    assert await page.get_by_text("No indicators match.").count() == 0

    # The project's edit form.
    await page.goto(owner.org_url + f"/projects/{project_id}")
    await fill(page, {"#name": "Forms project 2", "#description": "edited", "#tags": "forms, edited"})
    await submit(page, "Save", expect_path=f"**/projects/{project_id}")
    project = (await admin_api.get(f"/api/v1/projects/{project_id}")).json()
    assert (project["name"], project["description"], project["tags"]) == (
        "Forms project 2",
        "edited",
        ["forms", "edited"],
    )


KINDS = {
    "actors": (
        "/api/v1/threat-actors",
        {
            "#f-name": "APT Forms",
            "#f-aliases": "Forms Bear, FB",
            "#f-motivation": "organizational-gain",
            "#f-sophistication": "expert",
            "#f-country": "RU",
            "#f-first_seen": "2024-05-06",
            "#f-last_seen": "2025-07-08",
            "#f-attack_techniques": "T1566, T1059.001",
            "#f-description": "Made by the forms test.",
            "#f-tags": "apt, forms",
            "#f-tlp": "green",
        },
        {
            "name": "APT Forms",
            "aliases": ["Forms Bear", "FB"],
            "motivation": "organizational-gain",
            "sophistication": "expert",
            "country": "RU",
            "first_seen": "2024-05-06T00:00:00",
            "last_seen": "2025-07-08T00:00:00",
            "attack_techniques": ["T1566", "T1059.001"],
            "description": "Made by the forms test.",
            "tags": ["apt", "forms"],
            "tlp": "green",
        },
        {"#f-name": "APT Forms II", "#f-country": "", "#f-tlp": "red", "#f-last_seen": "2025-09-10"},
        {"name": "APT Forms II", "country": None, "tlp": "red", "last_seen": "2025-09-10T00:00:00"},
    ),
    "campaigns": (
        "/api/v1/campaigns",
        {
            "#f-name": "Operation Forms",
            "#f-aliases": "OpForms",
            "#f-objective": "Fill in every field.",
            "#f-first_seen": "2025-01-01",
            "#f-last_seen": "2025-02-01",
            "#f-attack_techniques": "T1071",
            "#f-description": "A campaign.",
            "#f-tags": "forms",
            "#f-tlp": "amber",
        },
        {
            "name": "Operation Forms",
            "aliases": ["OpForms"],
            "objective": "Fill in every field.",
            "first_seen": "2025-01-01T00:00:00",
            "last_seen": "2025-02-01T00:00:00",
            "attack_techniques": ["T1071"],
            "description": "A campaign.",
            "tags": ["forms"],
            "tlp": "amber",
        },
        {"#f-objective": "", "#f-aliases": "", "#f-tags": "forms, edited"},
        {"objective": "", "aliases": [], "tags": ["forms", "edited"]},
    ),
    "vulnerabilities": (
        "/api/v1/vulnerabilities",
        {
            "#f-cve_id": "CVE-2024-3400",
            "#f-cvss_v3_vector": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H",
            "#f-cvss_v4_vector": "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N",
            "#f-kev": True,
            "#f-epss": "0.97",
            "#f-published": "2024-04-12",
            "#f-description": "PAN-OS GlobalProtect.",
            "#f-tags": "edge, forms",
            "#f-tlp": "clear",
        },
        {
            "cve_id": "CVE-2024-3400",
            "kev": True,
            "epss": 0.97,
            "published": "2024-04-12T00:00:00",
            "description": "PAN-OS GlobalProtect.",
            "tags": ["edge", "forms"],
            "tlp": "clear",
            "cvss_v3_score": 9.8,
        },
        {"#f-kev": False, "#f-epss": "", "#f-cvss_v4_vector": ""},
        {"kev": False, "epss": None, "cvss_v4_vector": None},
    ),
    "reports": (
        "/api/v1/reports",
        {
            "#f-title": "Forms report",
            "#f-body": "# Findings\n\nEvery field.",
            "#f-published": "2025-03-03",
            "#f-attack_techniques": "T1105",
            "#f-description": "A report.",
            "#f-tags": "forms",
            "#f-tlp": "amber+strict",
        },
        {
            "title": "Forms report",
            "body": "# Findings\n\nEvery field.",
            "published": "2025-03-03T00:00:00",
            "attack_techniques": ["T1105"],
            "description": "A report.",
            "tags": ["forms"],
            "tlp": "amber+strict",
        },
        {"#f-published": "", "#f-body": "Rewritten."},
        {"published": None, "body": "Rewritten."},
    ),
}


def matches(got: dict[str, Any], expected: dict[str, Any]) -> list[str]:
    """Differences between an API object and what the form was given (timestamps by prefix)."""
    wrong = []
    for name, value in expected.items():
        have = got.get(name)
        ok = have.startswith(value) if isinstance(value, str) and name in STAMPS and have else have == value
        if not ok:
            wrong.append(f"{name}: {have!r} != {value!r}")
    return wrong


STAMPS = {"first_seen", "last_seen", "published"}


@pytest.mark.parametrize("kind", list(KINDS))
async def test_context_objects_create_and_edit_store_every_field(
    kind: str, owner: Owner, admin_api: httpx.AsyncClient
) -> None:
    path, create, expected, edit, edited = KINDS[kind]
    page = owner.page
    await page.goto(owner.org_url + f"/{kind}")
    await fill(page, create)
    await submit(page, "Create", expect_path=f"**/{kind}/*")
    object_id = page.url.rsplit("/", 1)[-1]
    got = (await admin_api.get(f"{path}/{object_id}")).json()
    assert not matches(got, expected), matches(got, expected)
    await fill(page, edit)
    await submit(page, "Save", expect_path=f"**/{kind}/{object_id}")
    got = (await admin_api.get(f"{path}/{object_id}")).json()
    # What was edited changed; everything else kept its value (no date reset, no list rewritten).
    assert not matches(got, {**expected, **edited}), matches(got, {**expected, **edited})


async def test_settings_forms_store_every_field(
    owner: Owner, admin_api: httpx.AsyncClient, server: Server
) -> None:
    page = owner.page
    await page.goto(owner.org_url + "/settings/members")
    await fill(page, {"#m-email": "invited-forms@e2e.example", "#m-role": "editor"})
    await submit(page, "Add")
    assert await page.get_by_text("Invitation created.").is_visible()
    invitations = (await admin_api.get(f"/api/v1/organizations/{owner.org_id}/invitations")).json()["items"]
    assert {"email": "invited-forms@e2e.example", "role": "editor"}.items() <= next(
        i for i in invitations if i["email"] == "invited-forms@e2e.example"
    ).items()

    await page.goto(owner.org_url + "/settings/webhooks")
    await fill(
        page,
        {
            "#w-url": "https://hooks.example.com/forms",
            "#w-min": "40",
            "#w-desc": "forms test",
            "input[name=events][value='indicator.created']": True,
            "input[name=events][value='indicator.updated']": True,
            "#w-active": False,
        },
    )
    await submit(page, "Create webhook")
    hooks = (await admin_api.get("/api/v1/webhooks")).json()["items"]
    hook = next(h for h in hooks if h["url"] == "https://hooks.example.com/forms")
    assert (hook["min_score"], hook["description"], hook["active"]) == (40, "forms test", False)
    assert sorted(hook["events"]) == ["indicator.created", "indicator.updated"]

    projects = (await admin_api.get("/api/v1/projects")).json()["items"]
    project_id = next(p["id"] for p in projects if p["name"] == "Forms project 2")
    await page.goto(owner.org_url + "/settings/taxii")
    await fill(
        page,
        {
            "#t-title": "Forms collection",
            "#t-desc": "every field",
            "#t-project": project_id,
            "#t-tags": "tor, relay",
            "#t-min": "55",
            "#t-tlp": "amber",
            "input[name=types][value='ipv4']": True,
            "input[name=types][value='url']": True,
            "input[name=can_read]": True,
            "input[name=can_write]": True,
        },
    )
    await submit(page, "Create collection")
    collections = (await admin_api.get("/api/v1/taxii-collections")).json()["items"]
    found = next(c for c in collections if c["title"] == "Forms collection")
    assert (found["description"], found["can_read"], found["can_write"]) == ("every field", True, True)
    assert found["filter"] == {
        "project_id": project_id,
        "tags": ["tor", "relay"],
        "types": ["ipv4", "url"],
        "min_score": 55,
        "tlp_max": "amber",
    }


async def test_sharing_forms_store_every_field(
    owner: Owner, admin_api: httpx.AsyncClient, server: Server
) -> None:
    page = owner.page
    projects = (await admin_api.get("/api/v1/projects")).json()["items"]
    project_id = next(p["id"] for p in projects if p["name"] == "Forms project 2")

    await page.goto(owner.org_url + "/feeds")
    await fill(
        page,
        {
            "#f-name": "Forms feed",
            "#f-kind": "csv",
            "#f-url": "https://lists.example/forms.csv",
            "#f-schedule": "30",
            "#f-tags": "feed, forms",
            "#f-user": "reader",
            "#f-password": "s3cret-feed-password",
        },
    )
    await submit(page, "Add feed", expect_path="**/feeds")
    feeds = (await admin_api.get("/api/v1/feeds")).json()["items"]
    feed = next(f for f in feeds if f["name"] == "Forms feed")
    assert (feed["kind"], feed["url"], feed["schedule_minutes"], feed["tags"]) == (
        "csv",
        "https://lists.example/forms.csv",
        30,
        ["feed", "forms"],
    )
    assert feed["username"] == "reader" and feed["has_password"] is True

    await page.goto(owner.org_url + "/imports")
    await page.locator("#i-file").set_input_files(
        files=[{"name": "forms.txt", "mimeType": "text/plain", "buffer": b"198.51.100.201\n198.51.100.202\n"}]
    )
    await fill(
        page,
        {
            "#i-format": "text",
            "#i-project": project_id,
            "#i-class": "suspicious",
            "#i-tlp": "red",
            "#i-tags": "imported, forms",
            "#i-source": "forms upload",
        },
    )
    await submit(page, "Import", expect_path="**/imports/*")
    await page.locator("#progress-text", has_text="100%").wait_for(timeout=30_000)
    got = (await admin_api.get("/api/v1/indicators", params={"tag": "imported"})).json()["items"]
    item = next(i for i in got if i["value"] == "198.51.100.201")
    assert (item["project_id"], item["classification"], item["tlp"]) == (project_id, "suspicious", "red")
    assert set(item["tags"]) >= {"imported", "forms"} and "forms upload" in item["sources"]

    await page.goto(owner.org_url + "/indicators/paste")
    await fill(
        page, {"#text": "<p>C2 at <b>hxxp://forms-paste[.]net/gate</b></p>", "input[name=format]": True}
    )
    await submit(page, "Find indicators")
    await fill(
        page,
        {
            "#p-project": project_id,
            "#p-class": "malicious",
            "#p-tlp": "green",
            "#p-tags": "pasted, forms",
            "#p-source": "forms paste",
        },
    )
    await submit(page, "Store the checked indicators")
    got = (await admin_api.get("/api/v1/indicators", params={"tag": "pasted"})).json()["items"]
    item = next(i for i in got if i["value"] == "http://forms-paste.net/gate")
    assert (item["project_id"], item["classification"], item["tlp"]) == (project_id, "malicious", "green")
    assert "forms paste" in item["sources"]

    # The export form's filters (type, min score, project) reach the file.
    await page.goto(owner.org_url + "/exports")
    await fill(page, {"#txt-type": "url", "#txt-min": "50", "#txt-project": project_id})
    async with page.expect_download() as waiting:
        await page.get_by_role("button", name="Download indicators.txt").click()
    download = await waiting.value
    body = Path(await download.path()).read_text()  # noqa: ASYNC240 - a small file Playwright just wrote
    assert body.split() == ["http://forms-paste.net/gate"]


async def test_account_forms_sign_up_password_and_new_org(browser: Any, server: Server) -> None:
    context, page = await new_page(browser, server)
    await page.goto("/signup")
    await fill(page, {"#name": "Fiona Forms", "#email": "fiona@e2e.example", "#password": PASSWORD})
    await submit(page, "Create account", expect_path="**/account")
    await fill(page, {"#current_password": PASSWORD, "#new_password": PASSWORD + " 2"})
    await submit(page, "Change password")
    assert await page.get_by_text("Password changed").is_visible()
    await fill(page, {"#org_name": "Fiona Labs", "#org_slug": "fiona-labs"})
    await submit(page, "Create organization", expect_path="**/o/*/")
    await context.close()
    context, page = await sign_in(browser, server, "fiona@e2e.example", PASSWORD + " 2")
    assert await page.locator("h1").inner_text() == "Fiona Labs"
    await context.close()
