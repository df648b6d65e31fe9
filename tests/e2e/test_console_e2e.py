"""The console in headless Chromium against a real `raptorflow serve` process.

First-run setup, sign-in, adding an indicator, a viewer who cannot edit, the org switcher's isolation,
and screenshots of the main pages (test artifacts; RAPTORFLOW_UPDATE_SCREENSHOTS=1 refreshes those
in docs/screenshots).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import httpx
from playwright.async_api import expect

from tests.e2e.conftest import OWNER, PASSWORD, ROOT, Owner, Server, sign_in

VIEWER = "viewer@e2e.example"


async def test_first_run_setup_creates_the_owner_and_signs_in(
    owner: Owner, browser: Any, server: Server
) -> None:
    await owner.page.goto(owner.org_url + "/")
    assert await owner.page.get_by_role("heading", name="Acme SOC").is_visible()
    # The link is single-use: a second visitor gets nothing.
    other = await browser.new_context(base_url=server.url)
    page = await other.new_page()
    response = await page.goto(server.setup_url)
    assert response is not None and response.status == 404
    assert await page.get_by_role("heading", name="Setup link not valid").count() == 1
    await other.close()


async def test_sign_in_and_add_an_indicator(owner: Owner, browser: Any, server: Server) -> None:
    context, page = await sign_in(browser, server, OWNER)
    await page.goto(owner.org_url + "/indicators")
    await page.get_by_label("Value (type detected; defanged values accepted)").fill(
        "hxxp://evil[.]example/payload"
    )
    await page.get_by_label("Classification").first.select_option("malicious")
    await page.get_by_label("Tags").first.fill("phishing, e2e")
    await page.get_by_role("button", name="Add").click()
    await page.wait_for_url("**/indicators/*")
    assert await page.get_by_role("heading", name="http://evil.example/payload").is_visible()
    assert await page.get_by_text("Effective score").is_visible()
    await page.get_by_role("button", name="Mark false positive").click()
    await page.wait_for_load_state()
    assert await page.get_by_text("false positive", exact=False).first.is_visible()
    await page.goto(owner.org_url + "/indicators?q=evil")
    assert await page.get_by_role("link", name="http://evil.example/payload").is_visible()
    await context.close()


async def test_paste_a_report_and_store_its_indicators_into_a_project(owner: Owner) -> None:
    page = owner.page
    await page.goto(owner.org_url + "/projects")
    await page.get_by_label("Name").fill("Operation Paste")
    await page.get_by_role("button", name="Create").click()
    await page.wait_for_url("**/projects/*")
    await page.goto(owner.org_url + "/indicators/paste")
    await page.get_by_label("Report text").fill(
        "Stage two came from hxxps://cdn-update[.]net/a.bin and 185.220.101[.]4; the hash was "
        "44d88612fea8a8f36de82e1278abb02f."
    )
    await page.get_by_role("button", name="Find indicators").click()
    await page.wait_for_load_state()
    assert await page.get_by_text("185.220.101.4", exact=True).is_visible()
    await page.get_by_label("Into project").select_option(label="Operation Paste")
    await page.get_by_role("button", name="Store the checked indicators").click()
    await page.wait_for_load_state()
    assert await page.get_by_text("created", exact=False).first.is_visible()
    await page.goto(owner.org_url + "/projects")
    await page.get_by_role("link", name="Operation Paste").click()
    await page.wait_for_url("**/projects/*")
    assert await page.get_by_role("link", name="185.220.101.4").is_visible()


async def test_import_shows_progress_reaching_100_percent(owner: Owner) -> None:
    page = owner.page
    await page.goto(owner.org_url + "/imports")
    content = "\n".join(f"192.0.2.{i}" for i in range(1, 200)).encode()
    await page.get_by_label("File (STIX 2.x bundle, MISP event, CSV or text)").set_input_files(
        files=[{"name": "blocklist.txt", "mimeType": "text/plain", "buffer": content}]
    )
    await page.get_by_label("Tags").fill("imported")
    await page.get_by_role("button", name="Import").click()
    await page.wait_for_url("**/imports/*")
    # The page reloads itself every 2 s until the job is done.
    await expect(page.locator("#progress-text")).to_have_text("100%", timeout=30_000)
    assert await page.locator("progress").get_attribute("value") == "100"
    assert await page.get_by_text("199 / 0 / 0").is_visible()


async def test_viewer_has_no_edit_controls_and_the_server_refuses_their_posts(
    owner: Owner, browser: Any, server: Server
) -> None:
    context = await browser.new_context(base_url=server.url)
    context.set_default_timeout(10_000)
    page = await context.new_page()
    await page.goto("/signup")
    await page.get_by_label("Name").fill("Victor Viewer")
    await page.get_by_label("Email").fill(VIEWER)
    await page.get_by_label("Password (12 characters or more)").fill(PASSWORD)
    await page.get_by_role("button", name="Create account").click()
    await page.wait_for_url("**/account")
    # The owner adds them as a viewer through the settings page.
    await owner.page.goto(owner.org_url + "/settings/members")
    await owner.page.locator("#m-email").fill(VIEWER)
    await owner.page.locator("#m-role").select_option("viewer")
    await owner.page.get_by_role("button", name="Add", exact=True).click()
    await owner.page.wait_for_load_state()
    assert await owner.page.get_by_text("Member added.").is_visible()

    await page.goto(owner.org_url + "/indicators?q=evil.example")
    assert await page.get_by_role("link", name="http://evil.example/payload").is_visible()
    assert await page.get_by_role("button", name="Add").count() == 0
    assert await page.locator("form[action$='/indicators'][method='post']").count() == 0
    await page.get_by_role("link", name="http://evil.example/payload").click()
    await page.wait_for_url("**/indicators/*")
    for label in ("Archive", "Mark false positive", "Clear false positive"):
        assert await page.get_by_role("button", name=label).count() == 0
    # A hand-made POST with a valid CSRF token is still refused by the server.
    status = await page.evaluate(
        """async (path) => {
            const token = document.querySelector("input[name=csrf_token]").value;
            const body = new URLSearchParams({csrf_token: token});
            const r = await fetch(path + "/archive", {method: "POST", body, redirect: "manual"});
            return r.status;
        }""",
        page.url.replace(server.url, ""),
    )
    assert status == 403
    await context.close()


async def test_switching_org_shows_none_of_the_other_orgs_data(
    owner: Owner, browser: Any, server: Server
) -> None:
    context, page = await sign_in(browser, server, VIEWER)
    await page.goto("/account")
    await page.locator("#org_name").fill("Victor Labs")
    await page.locator("#org_slug").fill("victor-labs")
    await page.get_by_role("button", name="Create organization").click()
    await page.wait_for_url("**/o/*/")
    assert await page.get_by_role("heading", name="Victor Labs").is_visible()
    switcher = page.get_by_label("Organization")
    assert await switcher.locator("option").count() == 2
    await switcher.select_option(label="Acme SOC (viewer)")
    await page.get_by_role("button", name="Switch").click()
    await expect(page.locator("h1")).to_have_text("Acme SOC")
    acme = page.url.rstrip("/")
    await page.goto(acme + "/indicators?q=evil.example")
    assert await page.get_by_text("http://evil.example/payload").count() == 1
    await page.get_by_label("Organization").select_option(label="Victor Labs (owner)")
    await page.get_by_role("button", name="Switch").click()
    await expect(page.locator("h1")).to_have_text("Victor Labs")
    await page.goto(page.url.rstrip("/") + "/indicators")
    assert await page.get_by_text("No indicators match.").is_visible()
    assert await page.get_by_text("evil.example").count() == 0
    # Acme's indicator id under Victor Labs' address is a 404, like a random id.
    response = await page.goto(
        page.url.replace("/indicators", "") + "/indicators/" + "0" * 8 + "-0000-7000-8000-" + "0" * 12
    )
    assert response is not None and response.status == 404
    await context.close()


LAYOUT = """() => {
    const doc = document.documentElement;
    const header = document.querySelector("header.top");
    const parts = [...header.children].filter(e => e.offsetParent !== null).map(e => e.getBoundingClientRect());
    const first = parts[0];
    return {
        scrollWidth: doc.scrollWidth,
        clientWidth: doc.clientWidth,
        // One line: every visible header item starts above the bottom of the first one.
        wrapped: parts.filter(r => r.top >= first.bottom).length,
        // ...and the nav shows all its links (it may only scroll on narrower screens).
        navClipped: header.querySelector("nav").scrollWidth > header.querySelector("nav").clientWidth,
        headerHeight: header.getBoundingClientRect().height,
    };
}"""


async def test_main_pages_fit_1280_and_1920_without_overflow(
    owner: Owner, browser: Any, server: Server, shots: Path
) -> None:
    page = owner.page
    # An editor API key (secret shown once on the page) to seed data over the real API.
    await page.goto(owner.org_url + "/settings/api-keys")
    await page.locator("#k-name").fill("seeder")
    await page.locator("#k-role").select_option("editor")
    await page.get_by_role("button", name="Create key").click()
    await page.wait_for_load_state()
    secret = await page.locator("#secret").input_value()
    assert secret.startswith("rf_")
    await page.goto(owner.org_url + "/settings/api-keys")
    assert await page.locator("#secret").count() == 0 and secret not in await page.content()
    headers = {"X-API-Key": secret}
    kinds = ["ipv4", "domain", "url", "sha256"]
    items = []
    for i in range(120):
        kind = kinds[i % 4]
        value = {
            "ipv4": f"203.0.113.{i % 250}",
            "domain": f"c2-{i}.bad.example",
            "url": f"https://drop-{i}.very-long-subdomain-name-for-layout.bad.example/path/to/payload/{i}.bin",
            "sha256": f"{i:064x}",
        }[kind]
        # Many long tags: the Tags column must wrap, not push the table off-screen.
        tags = ["seed", "layout-check-with-a-long-tag", f"campaign-{i}-operation-long-name", "phishing-kit"]
        items.append(
            {
                "value": value,
                "score": (i * 37) % 101,
                "classification": ["malicious", "suspicious", "unknown"][i % 3],
                "tags": tags,
            }
        )
    async with httpx.AsyncClient(base_url=server.url, headers=headers) as api:
        bulk = await api.post("/api/v1/indicators/bulk", json={"items": items})
        assert bulk.status_code == 200, bulk.text
        actor = await api.post(
            "/api/v1/threat-actors",
            json={
                "name": "APT Sample",
                "country": "XX",
                "attack_techniques": ["T1059.001", "T1566", "T1071", "T1105"],
            },
        )
        assert actor.status_code == 201, actor.text
        actor_id = actor.json()["id"]
        indicator_id = bulk.json()["results"][2]["id"]
        imported = await api.post("/api/v1/imports", json={"format": "text", "content": "192.0.2.77"})
        assert imported.status_code in (201, 202), imported.text
        import_id = imported.json()["id"]
    # A TAXII collection through the settings form: its URL is shown for TAXII clients.
    await page.goto(owner.org_url + "/settings/taxii")
    await page.locator("#t-title").fill("High-score network indicators")
    await page.locator("#t-min").fill("70")
    await page.get_by_label("ipv4").check()
    await page.get_by_label("domain").check()
    await page.get_by_role("button", name="Create collection").click()
    await page.wait_for_load_state()
    assert await page.get_by_text("created.").is_visible()
    url = await page.locator("input[id^='url-']").first.input_value()
    assert url.startswith(server.url + "/taxii2/acme-soc/collections/")
    async with httpx.AsyncClient(headers=headers) as taxii:
        served = await taxii.get(url, headers={"Accept": "application/taxii+json;version=2.1"})
        assert served.status_code == 200 and served.json()["title"] == "High-score network indicators"
    pages = {
        "dashboard": "/",
        "indicators": "/indicators",
        "indicator": f"/indicators/{indicator_id}",
        "projects": "/projects",
        "actors": "/actors",
        "actor": f"/actors/{actor_id}",
        "attack-matrix": f"/actors/{actor_id}/attack",
        "reports": "/reports",
        "imports": "/imports",
        "import": f"/imports/{import_id}",
        "members": "/settings/members",
        "api-keys": "/settings/api-keys",
        "webhooks": "/settings/webhooks",
        "taxii-collections": "/settings/taxii",
        "audit": "/settings/audit",
    }
    problems = []
    for width, height in ((1280, 800), (1920, 1080)):
        context = await browser.new_context(
            base_url=server.url,
            viewport={"width": width, "height": height},
            storage_state=await owner.context.storage_state(),
        )
        context.set_default_timeout(10_000)
        view = await context.new_page()
        for name, path in pages.items():
            response = await view.goto(owner.org_url + path)
            assert response is not None and response.status == 200, path
            found = await view.evaluate(LAYOUT)
            if found["scrollWidth"] > found["clientWidth"]:
                problems.append(f"{name} at {width}px: page {found['scrollWidth']}px wide")
            if found["navClipped"]:
                problems.append(f"{name} at {width}px: the header's nav is cut")
            if found["wrapped"]:
                problems.append(f"{name} at {width}px: header on two lines ({found['headerHeight']}px)")
            shot = shots / f"{name}-{width}x{height}.png"
            await view.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 10_000
        await context.close()
    assert not problems, "\n".join(problems)
    # The site icon is served (browsers ask for it on every page).
    async with httpx.AsyncClient(base_url=server.url) as anonymous:
        icon = await anonymous.get("/favicon.ico")
        assert icon.status_code == 200 and icon.headers["content-type"] == "image/x-icon"
        assert icon.content[:4] == b"\x00\x00\x01\x00"  # an ICO header
    # Dark theme through the toggle, kept across pages.
    await page.goto(owner.org_url + "/")
    await page.get_by_role("button", name="Toggle dark theme").click()
    assert await page.evaluate("document.documentElement.dataset.theme") in ("dark", "light")
    await page.screenshot(path=str(shots / "dashboard-toggled-theme.png"), full_page=True)
    if os.environ.get("RAPTORFLOW_UPDATE_SCREENSHOTS"):
        docs = ROOT / "docs" / "screenshots"
        docs.mkdir(parents=True, exist_ok=True)
        for name in ("dashboard", "indicator", "taxii-collections"):
            shutil.copyfile(shots / f"{name}-1280x800.png", docs / f"{name}.png")
