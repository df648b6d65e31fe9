"""The web console without a browser: sessions, cookie flags, CSRF, permissions, isolation, pages."""

from __future__ import annotations

import re
import time
from typing import Any

import httpx
import pytest

from raptorflow.app import create_app
from raptorflow.console.charts import markdown_html
from raptorflow.console.setup import issue_setup_token
from tests.conftest import PASSWORD, add_member, create_org, make_settings, sign_up

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_of(html: str) -> str:
    """The CSRF token a page's forms carry."""
    found = CSRF.search(html)
    assert found, "the page has no form with a CSRF token"
    return found.group(1)


async def console_login(http: httpx.AsyncClient, email: str) -> None:
    """Sign in through the console's form, like a browser."""
    page = await http.get("/login")
    assert page.status_code == 200
    done = await http.post(
        "/login", data={"email": email, "password": PASSWORD, "csrf_token": csrf_of(page.text), "next": "/"}
    )
    assert done.status_code == 303, done.text


def browser(app: Any) -> httpx.AsyncClient:
    """A separate cookie jar (a second browser) on the same app."""
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver")


async def test_anonymous_pages_redirect_to_sign_in(client: httpx.AsyncClient) -> None:
    response = await client.get("/o/0190a0a0-0000-7000-8000-000000000000/indicators?q=x")
    assert response.status_code == 303
    assert response.headers["location"].startswith("/login?next=%2Fo%2F")
    assert (await client.get("/")).headers["location"] == "/login"


async def test_session_cookie_is_httponly_lax_and_not_secure_over_http(client: httpx.AsyncClient) -> None:
    await sign_up(client, "cookie@example.com")
    page = await client.get("/login")
    done = await client.post(
        "/login", data={"email": "cookie@example.com", "password": PASSWORD, "csrf_token": csrf_of(page.text)}
    )
    assert done.status_code == 303
    cookie = done.headers["set-cookie"].lower()
    assert cookie.startswith("rf_session=rft_")
    assert "httponly" in cookie and "samesite=lax" in cookie and "secure" not in cookie
    home = await client.get("/account")
    assert home.status_code == 200 and "cookie@example.com" in home.text


async def test_session_cookie_is_secure_behind_https(database_url: str, client: httpx.AsyncClient) -> None:
    await sign_up(client, "tls@example.com")
    app = create_app(make_settings(database_url, public_url="https://tip.example.com"))
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="https://tip.example.com"
        ) as http:
            page = await http.get("/login")
            assert "secure" in page.headers["set-cookie"].lower()  # the pre-session CSRF cookie too
            done = await http.post(
                "/login",
                data={"email": "tls@example.com", "password": PASSWORD, "csrf_token": csrf_of(page.text)},
            )
            cookie = done.headers["set-cookie"].lower()
            assert "rf_session=" in cookie and "secure" in cookie and "httponly" in cookie
    finally:
        await app.state.engine.dispose()


async def test_wrong_password_shows_the_form_again(client: httpx.AsyncClient) -> None:
    await sign_up(client, "wrong@example.com")
    page = await client.get("/login")
    done = await client.post(
        "/login",
        data={"email": "wrong@example.com", "password": "not-the-password", "csrf_token": csrf_of(page.text)},
    )
    assert done.status_code == 401
    assert "Incorrect email or password" in done.text
    assert "rf_session" not in done.headers.get("set-cookie", "")


async def test_posts_without_the_csrf_token_are_refused(client: httpx.AsyncClient) -> None:
    owner = await sign_up(client, "csrf@example.com")
    org = await create_org(owner, "csrf-org")
    # Sign-in itself is protected by the pre-session token.
    assert (
        await client.post("/login", data={"email": "csrf@example.com", "password": PASSWORD})
    ).status_code == 403
    await console_login(client, "csrf@example.com")
    missing = await client.post(f"/o/{org}/indicators", data={"value": "evil.example"})
    forged = await client.post(f"/o/{org}/indicators", data={"value": "evil.example", "csrf_token": "x" * 40})
    assert missing.status_code == 403 and forged.status_code == 403
    assert "CSRF" in missing.text
    listed = await client.get("/api/v1/indicators", headers=owner.in_org(org))
    assert listed.json()["items"] == []
    token = csrf_of((await client.get(f"/o/{org}/indicators")).text)
    ok = await client.post(f"/o/{org}/indicators", data={"value": "evil[.]example", "csrf_token": token})
    assert ok.status_code == 303
    listed = await client.get("/api/v1/indicators", headers=owner.in_org(org))
    assert [i["value"] for i in listed.json()["items"]] == ["evil.example"]


async def test_viewer_sees_no_edit_controls_and_their_posts_are_refused(
    app: Any, client: httpx.AsyncClient
) -> None:
    owner = await sign_up(client, "owner-v@example.com")
    org = await create_org(owner, "viewer-org")
    viewer = await sign_up(client, "viewer-v@example.com")
    await add_member(owner, org, viewer, "viewer")
    created = await client.post(
        "/api/v1/indicators", json={"value": "198.51.100.7"}, headers=owner.in_org(org)
    )
    indicator_id = created.json()["id"]
    async with browser(app) as http:
        await console_login(http, "viewer-v@example.com")
        listing = await http.get(f"/o/{org}/indicators")
        assert listing.status_code == 200 and "198.51.100.7" in listing.text
        assert "Quick add" not in listing.text
        detail = await http.get(f"/o/{org}/indicators/{indicator_id}")
        assert detail.status_code == 200
        assert "Mark false positive" not in detail.text and ">Archive<" not in detail.text
        token = csrf_of(detail.text)  # the sign-out form: a valid token, still not allowed to write
        for path, data in (
            (f"/o/{org}/indicators", {"value": "viewer.example"}),
            (f"/o/{org}/indicators/{indicator_id}/archive", {}),
            (f"/o/{org}/indicators/{indicator_id}/false-positive", {"reason": "no"}),
            (f"/o/{org}/actors", {"name": "APT-viewer"}),
        ):
            refused = await http.post(path, data={**data, "csrf_token": token})
            assert refused.status_code == 403, path
            assert "needs the editor role" in refused.text
        settings = await http.get(f"/o/{org}/settings/api-keys")
        assert settings.status_code == 403
    state = await client.get(f"/api/v1/indicators/{indicator_id}", headers=owner.in_org(org))
    assert state.json()["archived"] is False and state.json()["false_positive"] is False


async def test_another_orgs_pages_answer_404(app: Any, client: httpx.AsyncClient) -> None:
    alice = await sign_up(client, "alice-c@example.com")
    org_a = await create_org(alice, "alice-c")
    bob = await sign_up(client, "bob-c@example.com")
    org_b = await create_org(bob, "bob-c")
    secret = await client.post(
        "/api/v1/indicators", json={"value": "alice-only.example"}, headers=alice.in_org(org_a)
    )
    secret_id = secret.json()["id"]
    async with browser(app) as http:
        await console_login(http, "bob-c@example.com")
        assert (await http.get(f"/o/{org_a}/")).status_code == 404
        assert (await http.get(f"/o/{org_a}/indicators")).status_code == 404
        # Alice's indicator id under Bob's own org: 404 like a random id.
        assert (await http.get(f"/o/{org_b}/indicators/{secret_id}")).status_code == 404
        assert (await http.get(f"/switch?to={org_a}")).status_code == 404
        mine = await http.get(f"/o/{org_b}/indicators")
        assert "alice-only.example" not in mine.text


async def test_first_run_setup_creates_owner_and_org_once(app: Any, client: httpx.AsyncClient) -> None:
    async with app.state.session_factory() as session:
        token = await issue_setup_token(session)
        await session.commit()
    assert token
    assert (await client.get("/setup?token=wrong")).status_code == 404
    form = await client.get(f"/setup?token={token}")
    assert form.status_code == 200 and "Welcome to RaptorFlow" in form.text
    data = {
        "token": token,
        "name": "First Owner",
        "email": "first@example.com",
        "password": PASSWORD,
        "org_name": "First Org",
        "org_slug": "first-org",
        "csrf_token": csrf_of(form.text),
    }
    bad = await client.post("/setup", data={**data, "org_slug": "Not A Slug"})
    assert bad.status_code == 422 and "First Owner" in bad.text
    done = await client.post("/setup", data=data)
    assert done.status_code == 303 and done.headers["location"].startswith("/o/")
    dashboard = await client.get(done.headers["location"])
    assert dashboard.status_code == 200 and "First Org" in dashboard.text
    again = await client.post(
        "/setup", data={**data, "email": "second@example.com", "csrf_token": csrf_of(dashboard.text)}
    )
    assert again.status_code == 404
    async with app.state.session_factory() as session:
        assert await issue_setup_token(session) is None  # a user exists: no more setup links


async def test_sign_out_ends_the_session(client: httpx.AsyncClient) -> None:
    await sign_up(client, "bye@example.com")
    await console_login(client, "bye@example.com")
    old = client.cookies.get("rf_session")
    page = await client.get("/account")
    out = await client.post("/logout", data={"csrf_token": csrf_of(page.text)})
    assert out.status_code == 303
    client.cookies.set("rf_session", old)
    assert (await client.get("/account")).status_code == 303  # the revoked session is not accepted


async def test_password_change_keeps_this_session(client: httpx.AsyncClient) -> None:
    await sign_up(client, "pw@example.com")
    await console_login(client, "pw@example.com")
    page = await client.get("/account")
    weak = await client.post(
        "/account/password",
        data={"current_password": PASSWORD, "new_password": "short", "csrf_token": csrf_of(page.text)},
    )
    assert weak.status_code == 422
    done = await client.post(
        "/account/password",
        data={
            "current_password": PASSWORD,
            "new_password": "a brand new passphrase",
            "csrf_token": csrf_of(page.text),
        },
    )
    assert done.status_code == 200 and "Password changed" in done.text
    assert (await client.get("/account")).status_code == 200


async def test_pages_render_and_edit_through_the_services(client: httpx.AsyncClient) -> None:
    owner = await sign_up(client, "pages@example.com")
    org = await create_org(owner, "pages-org")
    await console_login(client, "pages@example.com")
    token = csrf_of((await client.get(f"/o/{org}/")).text)
    actor = await client.post(
        f"/o/{org}/actors",
        data={
            "name": "APT Console",
            "aliases": "Console Bear, CB",
            "attack_techniques": "T1059.001, T1566",
            "tlp": "amber",
            "csrf_token": token,
        },
    )
    assert actor.status_code == 303
    actor_url = actor.headers["location"]
    detail = await client.get(actor_url)
    assert detail.status_code == 200 and "Console Bear" in detail.text
    edited = await client.post(
        actor_url, data={"name": "APT Console", "country": "zz!", "tlp": "amber", "csrf_token": token}
    )
    assert edited.status_code == 422 and "country" in edited.text
    matrix = await client.get(actor_url + "/attack")
    assert matrix.status_code == 200 and "T1059.001" in matrix.text
    report = await client.post(
        f"/o/{org}/reports",
        data={
            "title": "Weekly",
            "body": "# Heading\n\n<script>alert(1)</script> [x](javascript:alert(1))",
            "tlp": "green",
            "csrf_token": token,
        },
    )
    assert report.status_code == 303
    shown = await client.get(report.headers["location"])
    assert "<h1>Heading</h1>" in shown.text
    assert "<script>alert(1)</script>" not in shown.text and 'href="javascript:' not in shown.text
    added = await client.post(
        f"/o/{org}/indicators", data={"value": "hxxp://bad[.]example/x", "csrf_token": token}
    )
    assert added.status_code == 303
    ind = await client.get(added.headers["location"])
    assert ind.status_code == 200 and "Effective score" in ind.text
    assert "Raw STIX 2.1" in ind.text and "[url:value = &#39;http://bad.example/x&#39;]" in ind.text
    fp = await client.post(
        added.headers["location"] + "/false-positive", data={"reason": "sinkhole", "csrf_token": token}
    )
    assert fp.status_code == 303
    assert "false positive" in (await client.get(added.headers["location"])).text
    bad = await client.post(
        f"/o/{org}/indicators", data={"value": "not an indicator !!", "csrf_token": token}
    )
    assert bad.status_code == 422
    project = await client.post(f"/o/{org}/projects", data={"name": "Case 1", "csrf_token": token})
    assert project.status_code == 303
    key = await client.post(
        f"/o/{org}/settings/api-keys", data={"name": "siem", "role": "viewer", "csrf_token": token}
    )
    assert key.status_code == 200 and "shown only once" in key.text
    secret = re.search(r'value="(rf_[^"]+)"', key.text)
    assert secret is not None
    keys_again = await client.get(f"/o/{org}/settings/api-keys")
    assert secret.group(1) not in keys_again.text
    for path in (
        "/",
        "/indicators",
        "/indicators?q=bad",
        "/indicators?type=url&sort=-score",
        "/actors",
        "/campaigns",
        "/vulnerabilities",
        "/reports",
        "/projects",
        project.headers["location"][len(f"/o/{org}") :],
        "/settings/members",
        "/settings/audit",
    ):
        started = time.perf_counter()
        response = await client.get(f"/o/{org}{path}")
        assert response.status_code == 200, path
        assert time.perf_counter() - started < 0.5, path
        assert response.headers["content-security-policy"].startswith("default-src 'self'")
    audit = await client.get(f"/o/{org}/settings/audit")
    assert "api_key.create" in audit.text or "api-key" in audit.text


def test_markdown_never_passes_raw_html() -> None:
    html = markdown_html('<img src=x onerror="alert(1)">\n\n[a](javascript:alert(1)) **b**')
    assert "<img" not in html and 'onerror="alert' not in html.replace("&quot;", '"').split("&lt;")[0]
    assert 'href="javascript:' not in html and "<strong>b</strong>" in html


@pytest.mark.parametrize("target", ["//evil.example/", "https://evil.example/", "/\\evil"])
async def test_sign_in_never_redirects_off_site(client: httpx.AsyncClient, target: str) -> None:
    await sign_up(client, "next@example.com")
    page = await client.get("/login")
    done = await client.post(
        "/login",
        data={
            "email": "next@example.com",
            "password": PASSWORD,
            "csrf_token": csrf_of(page.text),
            "next": target,
        },
    )
    assert done.headers["location"] == "/"


async def test_big_org_figures_compute_in_the_background_and_then_come_from_the_cache() -> None:
    import asyncio
    import uuid

    from raptorflow.console.stats_cache import StatsCache

    calls: list[str] = []

    async def now() -> dict[str, Any]:
        calls.append("now")
        return {"total": 1}

    async def later() -> dict[str, Any]:
        calls.append("later")
        await asyncio.sleep(0.01)
        return {"total": 2}

    async def big() -> bool:
        return True

    cache = StatsCache(None)
    org = uuid.uuid4()
    assert await cache.get(org, now, later, big) == (None, 0.0)  # pending: the page reloads itself
    assert await cache.get(org, now, later, big) == (None, 0.0)  # one computation at a time
    await asyncio.gather(*cache.tasks)
    stats, age = await cache.get(org, now, later, big)
    assert stats == {"total": 2} and age < 1 and calls == ["later"]

    async def small() -> bool:
        return False

    other = uuid.uuid4()
    assert (await cache.get(other, now, later, small))[0] == {"total": 1}
    assert other not in cache.local  # a small org: never cached, always live


async def test_paste_extracts_candidates_and_stores_the_checked_ones_into_a_project(
    client: httpx.AsyncClient,
) -> None:
    owner = await sign_up(client, "paste@example.com")
    org = await create_org(owner, "paste-org")
    project = await client.post("/api/v1/projects", json={"name": "Case 7"}, headers=owner.in_org(org))
    project_id = project.json()["id"]
    await client.post("/api/v1/indicators", json={"value": "knownbad.net"}, headers=owner.in_org(org))
    await console_login(client, "paste@example.com")
    form = await client.get(f"/o/{org}/indicators/paste")
    token = csrf_of(form.text)
    text = (
        "The loader beacons to hxxps://stage2[.]bad-domain[.]com/x and knownbad[.]net, dropping 45.77.12[.]9."
    )
    preview = await client.post(f"/o/{org}/indicators/paste", data={"text": text, "csrf_token": token})
    assert preview.status_code == 200
    boxes = re.findall(r'name="item" value="([^"]+)"( checked)?', preview.text)
    values = {v: bool(c) for v, c in boxes}
    assert values.get("domain:knownbad.net") is False  # known: left unchecked
    assert values.get("ipv4:45.77.12.9") is True
    chosen = [v for v, checked in values.items() if checked]
    done = await client.post(
        f"/o/{org}/indicators/paste/confirm",
        data={"item": chosen, "project_id": project_id, "tags": "case-7", "csrf_token": token},
    )
    assert done.status_code == 200 and f"{len(chosen)} created" in done.text
    listed = await client.get(f"/api/v1/indicators?project_id={project_id}", headers=owner.in_org(org))
    stored = {i["value"] for i in listed.json()["items"]}
    assert "45.77.12.9" in stored and "knownbad.net" not in stored
    assert all(i["tags"] == ["case-7"] for i in listed.json()["items"])


async def test_import_upload_reaches_100_percent_and_export_downloads(client: httpx.AsyncClient) -> None:
    import asyncio

    owner = await sign_up(client, "import@example.com")
    org = await create_org(owner, "import-org")
    await console_login(client, "import@example.com")
    token = csrf_of((await client.get(f"/o/{org}/imports")).text)
    content = "\n".join(f"10.20.{i // 250}.{i % 250}" for i in range(300)).encode()
    started = await client.post(
        f"/o/{org}/imports",
        data={"csrf_token": token, "format": "text", "tags": "upload"},
        files={"file": ("ips.txt", content, "text/plain")},
    )
    assert started.status_code == 303, started.text
    detail_url = started.headers["location"]
    for _ in range(100):
        detail = await client.get(detail_url)
        if "100%" in detail.text:
            break
        await asyncio.sleep(0.1)
    assert '<progress id="progress" max="100" value="100">' in detail.text
    assert "300 / 0 / 0" in detail.text
    empty = await client.post(
        f"/o/{org}/imports", data={"csrf_token": token}, files={"file": ("e.txt", b"", "text/plain")}
    )
    assert empty.status_code == 422 and "empty" in empty.text
    csv = await client.get(f"/o/{org}/exports/download/csv?type=ipv4&min_score=&project_id=")
    assert csv.status_code == 200 and csv.headers["content-disposition"].endswith('indicators.csv"')
    assert csv.text.count("10.20.") == 300
    blocklist = await client.get(f"/o/{org}/exports/download/txt?min_score=101")
    assert blocklist.status_code == 422 and "min_score" in blocklist.text
    assert (await client.get(f"/o/{org}/exports/download/exe")).status_code == 404
    dashboard = await client.get(f"/o/{org}/")
    assert "ips.txt" in dashboard.text


async def test_feeds_page_adds_a_feed_and_refuses_a_bad_url(client: httpx.AsyncClient) -> None:
    owner = await sign_up(client, "feeds@example.com")
    org = await create_org(owner, "feeds-org")
    await console_login(client, "feeds@example.com")
    token = csrf_of((await client.get(f"/o/{org}/feeds")).text)
    bad = await client.post(
        f"/o/{org}/feeds", data={"name": "x", "kind": "text", "url": "ftp://nope", "csrf_token": token}
    )
    assert bad.status_code == 422 and "url" in bad.text
    ok = await client.post(
        f"/o/{org}/feeds",
        data={
            "name": "Abuse list",
            "kind": "text",
            "url": "https://lists.example/ips.txt",
            "csrf_token": token,
        },
    )
    assert ok.status_code == 303
    listed = await client.get(f"/o/{org}/feeds")
    assert "Abuse list" in listed.text and "never run" in listed.text and "Run now" in listed.text
    api = await client.get("/api/v1/feeds", headers=owner.in_org(org))
    assert [f["name"] for f in api.json()["items"]] == ["Abuse list"]


async def test_webhooks_page_shows_the_secret_once(client: httpx.AsyncClient) -> None:
    owner = await sign_up(client, "hooks@example.com")
    org = await create_org(owner, "hooks-org")
    await console_login(client, "hooks@example.com")
    token = csrf_of((await client.get(f"/o/{org}/settings/webhooks")).text)
    none = await client.post(
        f"/o/{org}/settings/webhooks", data={"url": "https://hooks.example.com/in", "csrf_token": token}
    )
    assert none.status_code == 422 and "events" in none.text
    made = await client.post(
        f"/o/{org}/settings/webhooks",
        data={"url": "https://hooks.example.com/in", "events": ["indicator.created"], "csrf_token": token},
    )
    assert made.status_code == 200 and "shown only once" in made.text
    secret = re.search(r'id="secret" class="mono" readonly value="([^"]+)"', made.text)
    assert secret is not None
    again = await client.get(f"/o/{org}/settings/webhooks")
    assert "hooks.example.com/in" in again.text and secret.group(1) not in again.text
