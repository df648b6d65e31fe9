"""Console settings pages for TAXII collections and billing, driven like a browser (httpx, forms, CSRF)."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import delete, update

from raptorflow.app import create_app
from raptorflow.auth.permissions import Role
from raptorflow.auth.principal import OrgContext, Principal
from raptorflow.billing.plans import seed_defaults
from raptorflow.console import billing_pages
from raptorflow.console.repository import ConsoleRepository
from raptorflow.intel.indicators.service import IndicatorService
from raptorflow.kit.db import utcnow
from raptorflow.kit.tenancy import bind_org
from raptorflow.models import Indicator, UsageCount
from tests.billing.fake_razorpay import KEY_ID, KEY_SECRET, FakeRazorpay, checkout_signature
from tests.conftest import add_member, create_org, make_settings, sign_up
from tests.console.test_console import browser, console_login, csrf_of

ORDER_ID = re.compile(r'data-razorpay-order="([^"]+)"')


@pytest.fixture(scope="module")
def razorpay() -> Iterator[FakeRazorpay]:
    """The Razorpay test double of the billing tests, on 127.0.0.1."""
    server = FakeRazorpay().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
async def billing_app(database_url: str, razorpay: FakeRazorpay) -> AsyncIterator[Any]:
    """The app with billing on and Razorpay pointed at the double (same database as `app`)."""
    settings = make_settings(
        database_url,
        billing_enabled=True,
        razorpay_key_id=KEY_ID,
        razorpay_key_secret=KEY_SECRET,
        razorpay_base_url=razorpay.url,
    )
    application = create_app(settings)
    yield application
    await application.state.engine.dispose()


@pytest.fixture
async def bclient(billing_app: Any, client: httpx.AsyncClient) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the billing app; `client` empties the shared tables after the test."""
    async with billing_app.state.session_factory() as session:
        await seed_defaults(session)
        await session.commit()
    async with browser(billing_app) as http:
        yield http
    await billing_app.state.token_issuer.reload(force=True)


async def test_taxii_collections_are_listed_created_and_deleted_by_admins_only(
    app: Any, client: httpx.AsyncClient
) -> None:
    owner = await sign_up(client, "taxii-owner@example.com")
    org = await create_org(owner, "taxii-org")
    viewer = await sign_up(client, "taxii-viewer@example.com")
    await add_member(owner, org, viewer, "viewer")
    other_owner = await sign_up(client, "taxii-other@example.com")
    other_org = await create_org(other_owner, "taxii-other")
    foreign = await client.post(
        "/api/v1/taxii-collections", json={"title": "Theirs"}, headers=other_owner.in_org(other_org)
    )
    assert foreign.status_code == 201
    await console_login(client, "taxii-owner@example.com")
    empty = await client.get(f"/o/{org}/settings/taxii")
    assert empty.status_code == 200 and "No collections yet" in empty.text and "Theirs" not in empty.text
    public = str(app.state.settings.public_url).rstrip("/")
    assert f"{public}/taxii2/taxii-org/" in empty.text
    token = csrf_of(empty.text)
    bad = await client.post(
        f"/o/{org}/settings/taxii",
        data={"title": "Bad", "types": ["ipv4", "nonsense"], "can_read": "1", "csrf_token": token},
    )
    assert bad.status_code == 422 and "unknown indicator type" in bad.text
    made = await client.post(
        f"/o/{org}/settings/taxii",
        data={
            "title": "High-score IPs",
            "types": ["ipv4", "domain"],
            "tags": "c2, APT",
            "min_score": "70",
            "tlp_max": "amber",
            "can_read": "1",
            "csrf_token": token,
        },
    )
    assert made.status_code == 200, made.text
    listed = (await client.get("/api/v1/taxii-collections", headers=owner.in_org(org))).json()["items"]
    assert [(c["title"], c["can_read"], c["can_write"]) for c in listed] == [("High-score IPs", True, False)]
    assert listed[0]["filter"] == {
        "tags": ["c2", "apt"],
        "types": ["domain", "ipv4"],
        "min_score": 70,
        "tlp_max": "amber",
    }
    collection_id = listed[0]["id"]
    assert f"{public}/taxii2/taxii-org/collections/{collection_id}/" in made.text
    assert "score ≥ 70" in made.text and "types domain, ipv4" in made.text
    duplicate = await client.post(
        f"/o/{org}/settings/taxii", data={"title": "High-score IPs", "can_read": "1", "csrf_token": token}
    )
    assert duplicate.status_code == 409 and "exists" in duplicate.text
    async with browser(app) as as_viewer:
        await console_login(as_viewer, "taxii-viewer@example.com")
        seen = await as_viewer.get(f"/o/{org}/settings/taxii")
        assert seen.status_code == 200 and f"/collections/{collection_id}/" in seen.text
        assert "New collection" not in seen.text and ">Delete<" not in seen.text
        viewer_token = csrf_of(seen.text)
        refused = await as_viewer.post(
            f"/o/{org}/settings/taxii/{collection_id}/delete", data={"csrf_token": viewer_token}
        )
        assert refused.status_code == 403
    # Another org's collection through this org's page: 404 like a random id, and it survives.
    cross = await client.post(
        f"/o/{org}/settings/taxii/{foreign.json()['id']}/delete", data={"csrf_token": token}
    )
    assert cross.status_code == 404
    theirs = await client.get("/api/v1/taxii-collections", headers=other_owner.in_org(other_org))
    assert len(theirs.json()["items"]) == 1
    gone = await client.post(f"/o/{org}/settings/taxii/{collection_id}/delete", data={"csrf_token": token})
    assert gone.status_code == 303
    assert (await client.get("/api/v1/taxii-collections", headers=owner.in_org(org))).json()["items"] == []


async def test_billing_disabled_says_so_and_the_tab_is_hidden(client: httpx.AsyncClient) -> None:
    owner = await sign_up(client, "nobill@example.com")
    org = await create_org(owner, "nobill")
    await console_login(client, "nobill@example.com")
    members = await client.get(f"/o/{org}/settings/members")
    assert "TAXII collections" in members.text and "/settings/billing" not in members.text
    page = await client.get(f"/o/{org}/settings/billing")
    assert page.status_code == 200 and "Billing is disabled" in page.text
    assert "checkout.razorpay.com" not in page.text + page.headers["content-security-policy"]
    token = csrf_of(page.text)
    order = await client.post(f"/o/{org}/settings/billing/orders", data={"plan": "pro", "csrf_token": token})
    assert order.status_code == 404 and "Billing is disabled" in order.text


async def test_billing_page_shows_usage_and_upgrades_through_checkout(
    bclient: httpx.AsyncClient, razorpay: FakeRazorpay
) -> None:
    owner = await sign_up(bclient, "bill-owner@example.com")
    org = await create_org(owner, "bill-org")
    editor = await sign_up(bclient, "bill-editor@example.com")
    await add_member(owner, org, editor, "editor")
    for value in ("198.51.100.1", "198.51.100.2", "bad.example"):
        made = await bclient.post("/api/v1/indicators", json={"value": value}, headers=owner.in_org(org))
        assert made.status_code == 201
    await console_login(bclient, "bill-owner@example.com")
    page = await bclient.get(f"/o/{org}/settings/billing")
    assert page.status_code == 200
    usage = (await bclient.get("/api/v1/billing/usage", headers=owner.in_org(org))).json()
    assert usage["indicators"]["used"] == 3 and usage["members"]["used"] == 2
    limit = usage["indicators"]["limit"]
    assert f"Indicators: <strong>3</strong> of {limit:,}" in page.text
    assert f"Members and open invitations: <strong>2</strong> of {usage['members']['limit']:,}" in page.text
    assert f'value="{round(3 * 100 / limit)}"' in page.text
    assert "Plan: Free" in page.text and "Upgrade to Pro" in page.text and "No invoices yet" in page.text
    csp = page.headers["content-security-policy"]
    assert "razorpay" not in csp and "checkout.razorpay.com" not in page.text
    token = csrf_of(page.text)
    ordered = await bclient.post(
        f"/o/{org}/settings/billing/orders",
        data={"plan": "pro", "idempotency_key": "console-test-1", "csrf_token": token},
    )
    assert ordered.status_code == 200, ordered.text
    assert "script-src 'self' https://checkout.razorpay.com" in ordered.headers["content-security-policy"]
    assert '<script src="https://checkout.razorpay.com/v1/checkout.js" defer></script>' in ordered.text
    found = ORDER_ID.search(ordered.text)
    assert found is not None and found.group(1) in razorpay.orders
    order_id = found.group(1)
    assert razorpay.orders[order_id]["amount"] == 413_000 and "₹4,130.00" in ordered.text
    # Re-posting the same form (double click) replays the same order instead of a second one.
    again = await bclient.post(
        f"/o/{org}/settings/billing/orders",
        data={"plan": "pro", "idempotency_key": "console-test-1", "csrf_token": token},
    )
    assert ORDER_ID.search(again.text).group(1) == order_id  # type: ignore[union-attr]
    payment = razorpay.pay(order_id)
    forged = await bclient.post(
        f"/o/{org}/settings/billing/verify",
        data={
            "razorpay_order_id": order_id,
            "razorpay_payment_id": payment["id"],
            "razorpay_signature": "0" * 64,
            "csrf_token": token,
        },
    )
    assert forged.status_code == 400 and "Plan: Free" in forged.text
    verified = await bclient.post(
        f"/o/{org}/settings/billing/verify",
        data={
            "razorpay_order_id": order_id,
            "razorpay_payment_id": payment["id"],
            "razorpay_signature": checkout_signature(order_id, payment["id"]),
            "csrf_token": token,
        },
    )
    assert verified.status_code == 200, verified.text
    assert "The new plan is active" in verified.text and "Plan: Pro" in verified.text
    invoices = (await bclient.get("/api/v1/billing/invoices", headers=owner.in_org(org))).json()["items"]
    assert len(invoices) == 1
    invoice = invoices[0]
    link = f"/o/{org}/settings/billing/invoices/{invoice['id']}"
    assert link in verified.text and invoice["number"] in verified.text
    printable = await bclient.get(link)
    assert printable.status_code == 200 and invoice["number"] in printable.text
    assert printable.headers["content-security-policy"].startswith("default-src 'none'")
    # An editor is not a billing admin; a stranger's org page for the invoice is 404.
    async with browser(bclient._transport.app) as as_editor:  # type: ignore[attr-defined]
        await console_login(as_editor, "bill-editor@example.com")
        assert (await as_editor.get(f"/o/{org}/settings/billing")).status_code == 403
        assert (await as_editor.get(link)).status_code == 403
        members = await as_editor.get(f"/o/{org}/settings/members")
        assert "/settings/billing" not in members.text
    stranger = await sign_up(bclient, "bill-stranger@example.com")
    their_org = await create_org(stranger, "bill-stranger")
    async with browser(bclient._transport.app) as as_stranger:  # type: ignore[attr-defined]
        await console_login(as_stranger, "bill-stranger@example.com")
        assert (await as_stranger.get(link)).status_code == 404
        assert (
            await as_stranger.get(f"/o/{their_org}/settings/billing/invoices/{invoice['id']}")
        ).status_code == 404
        assert (
            await as_stranger.get(f"/o/{their_org}/settings/billing/invoices/{uuid.uuid4()}")
        ).status_code == 404


async def test_dashboard_figures_in_one_pass_equal_the_service_stats(
    app: Any, client: httpx.AsyncClient
) -> None:
    owner = await sign_up(client, "stats-owner@example.com")
    org = await create_org(owner, "stats-org")
    other = await create_org(owner, "stats-other")
    items = [
        {"value": f"198.51.100.{i}", "score": i * 9, "classification": c, "tlp": t}
        for i, (c, t) in enumerate(
            [("malicious", "red"), ("benign", "green"), ("unknown", "amber"), ("suspicious", "clear")] * 3
        )
    ] + [{"value": "stats.example", "score": 100}, {"value": "https://stats.example/x", "score": 0}]
    made = await client.post("/api/v1/indicators/bulk", json={"items": items}, headers=owner.in_org(org))
    assert made.status_code == 200, made.text
    noise = await client.post(
        "/api/v1/indicators/bulk", json={"items": [{"value": "other.example"}]}, headers=owner.in_org(other)
    )
    assert noise.status_code == 200
    listed = (await client.get("/api/v1/indicators?limit=3", headers=owner.in_org(org))).json()["items"]
    archived = await client.post(f"/api/v1/indicators/{listed[0]['id']}/archive", headers=owner.in_org(org))
    assert archived.status_code == 200, archived.text
    org_id = uuid.UUID(org)
    async with app.state.session_factory() as session:
        await bind_org(session, org_id)
        # One indicator added 40 days ago: counted everywhere but in the 30-day chart.
        await session.execute(
            update(Indicator)
            .where(Indicator.org_id == org_id, Indicator.id == uuid.UUID(listed[1]["id"]))
            .values(created_at=utcnow() - timedelta(days=40))
        )
        since = utcnow() - timedelta(days=30)
        one_pass = await ConsoleRepository(session, org_id).dashboard_stats(since)
        ctx = OrgContext(Principal(user_id=uuid.UUID(str(owner.user_id))), org_id, Role.owner)
        service = await IndicatorService(session, ctx).repo.stats(since)
        await session.rollback()
    assert one_pass == service
    assert one_pass["total"] == len(items) - 1
    assert sum(d["count"] for d in one_pass["added_per_day"]) == len(items) - 2
    benign_live = 3 - (listed[0]["classification"] == "benign")  # listed[0] was archived
    assert one_pass["by_classification"].get("benign", 0) == benign_live


async def test_billing_page_of_a_big_org_counts_indicators_in_the_background(
    bclient: httpx.AsyncClient, billing_app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(billing_pages, "BIG_ORG", 2)  # "big" from 2 indicators: no million rows needed
    owner = await sign_up(bclient, "big-bill@example.com")
    org = await create_org(owner, "big-bill")
    for value in ("198.51.100.1", "198.51.100.2", "198.51.100.3"):
        made = await bclient.post("/api/v1/indicators", json={"value": value}, headers=owner.in_org(org))
        assert made.status_code == 201
    async with billing_app.state.session_factory() as session:  # as if never counted
        await bind_org(session, uuid.UUID(org))
        await session.execute(delete(UsageCount).where(UsageCount.org_id == uuid.UUID(org)))
        await session.commit()
    await console_login(bclient, "big-bill@example.com")
    first = await bclient.get(f"/o/{org}/settings/billing")
    assert first.status_code == 200 and "Counting this organization" in first.text
    assert "Indicators: <strong>—</strong>" in first.text
    await asyncio.gather(*billing_pages._tasks)
    second = await bclient.get(f"/o/{org}/settings/billing")
    assert "Indicators: <strong>3</strong>" in second.text and "as counted at" in second.text
