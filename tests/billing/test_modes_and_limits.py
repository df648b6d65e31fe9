"""Both billing modes: off → no limits and billing paths say so; on → plan limits, renewals, grace."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from raptorflow.billing.operations import renew_due
from raptorflow.billing.plans import set_plan
from raptorflow.kit.db import utcnow
from tests.billing.conftest import owner_with_org
from tests.billing.fake_razorpay import FakeRazorpay
from tests.conftest import sign_up

BILLING = "/api/v1/billing"


async def test_billing_disabled_has_no_limits_and_says_so(client: httpx.AsyncClient) -> None:
    """Default (self-hosted): every billing path answers 'billing is disabled'; a 4th member joins."""
    owner, org = await owner_with_org(client)
    for method, path in (
        ("GET", "/subscription"),
        ("GET", "/plans"),
        ("POST", "/orders"),
        ("POST", "/webhooks/razorpay"),
    ):
        answer = await client.request(method, BILLING + path, headers=owner.in_org(org), json={})
        assert answer.status_code == 404, answer.text
        assert answer.json()["type"].endswith("/billing-disabled")
        assert "Billing is disabled" in answer.json()["detail"]
    for n in range(4):  # Free allows 3 members when billing is on; off, nothing is limited
        member = await sign_up(client, f"m{n}@example.com")
        added = await client.post(
            f"/api/v1/organizations/{org}/members",
            json={"email": member.email, "role": "viewer"},
            headers=owner.headers,
        )
        assert added.status_code == 201, added.text


async def _set_free_limit(app: Any, **changes: Any) -> None:
    async with app.state.session_factory() as session:
        await set_plan(session, "free", changes)
        await session.commit()


async def test_limits_name_the_limit_and_the_plan_that_lifts_it(
    bclient: httpx.AsyncClient, billing_app: Any
) -> None:
    """Members past the Free plan's 3 and indicators past its (lowered) limit → 403 problem."""
    owner, org = await owner_with_org(bclient)
    for n in range(2):
        member = await sign_up(bclient, f"m{n}@example.com")
        added = await bclient.post(
            f"/api/v1/organizations/{org}/members",
            json={"email": member.email, "role": "viewer"},
            headers=owner.headers,
        )
        assert added.status_code == 201, added.text
    fourth = await sign_up(bclient, "m3@example.com")
    refused = await bclient.post(
        f"/api/v1/organizations/{org}/members",
        json={"email": fourth.email, "role": "viewer"},
        headers=owner.headers,
    )
    assert refused.status_code == 403, refused.text
    problem = refused.json()
    assert problem["limit"] == "members" and problem["plan"] == "free" and problem["upgrade_to"] == "pro"
    assert "Pro plan lifts it" in problem["detail"]
    # An invitation is a seat too (it becomes a membership on sign-up without another check).
    invited = await bclient.post(
        f"/api/v1/organizations/{org}/members",
        json={"email": "stranger@example.com", "role": "viewer"},
        headers=owner.headers,
    )
    assert invited.status_code == 403 and invited.json()["limit"] == "members", invited.text

    await _set_free_limit(billing_app, max_indicators=3)
    ok = await bclient.post(
        "/api/v1/indicators/bulk",
        json={"items": [{"value": f"a{i}.example.com"} for i in range(3)]},
        headers=owner.in_org(org),
    )
    assert ok.status_code == 200 and ok.json()["created"] == 3, ok.text
    merged = await bclient.post(
        "/api/v1/indicators", json={"value": "a0.example.com"}, headers=owner.in_org(org)
    )
    assert merged.status_code == 200, merged.text  # a merge adds nothing
    over = await bclient.post(
        "/api/v1/indicators", json={"value": "new.example.com"}, headers=owner.in_org(org)
    )
    assert over.status_code == 403 and over.json()["limit"] == "indicators", over.text
    # A deletion frees a place: the running count is recounted exactly when it says the limit is near.
    first = ok.json()["results"][0]["id"]
    assert (await bclient.delete(f"/api/v1/indicators/{first}", headers=owner.in_org(org))).status_code == 204
    again = await bclient.post(
        "/api/v1/indicators", json={"value": "new.example.com"}, headers=owner.in_org(org)
    )
    assert again.status_code == 201, again.text
    usage = (await bclient.get(f"{BILLING}/usage", headers=owner.in_org(org))).json()
    assert usage["indicators"] == {"used": 3, "limit": 3}
    assert usage["members"] == {"used": 3, "limit": 3}
    assert usage["requests_this_month"]["limit"] == 10_000


async def test_plans_are_data_and_only_admins_see_billing(
    bclient: httpx.AsyncClient, billing_app: Any
) -> None:
    """GET /plans lists the seeded plans; an editor gets 403 on the subscription."""
    plans = (await bclient.get(f"{BILLING}/plans")).json()["items"]
    assert [(p["code"], p["price_paise"]) for p in plans] == [
        ("free", 0),
        ("pro", 350_000),
        ("enterprise", None),
    ]
    owner, org = await owner_with_org(bclient)
    editor = await sign_up(bclient, "editor@example.com")
    await bclient.post(
        f"/api/v1/organizations/{org}/members",
        json={"email": editor.email, "role": "editor"},
        headers=owner.headers,
    )
    assert (await bclient.get(f"{BILLING}/subscription", headers=editor.in_org(org))).status_code == 403
    assert (await bclient.get(f"{BILLING}/subscription", headers=owner.in_org(org))).status_code == 200


async def test_renewal_past_due_grace_then_free(
    bclient: httpx.AsyncClient, billing_app: Any, razorpay: FakeRazorpay
) -> None:
    """Period end → next charge created, past_due with grace; grace over unpaid → Free, data kept."""
    from tests.billing.test_payments import _order, _webhook

    owner, org = await owner_with_org(bclient)
    order = (await _order(bclient, owner, org)).json()
    payment = razorpay.pay(order["razorpay_order_id"])
    assert (await _webhook(bclient, razorpay.event("payment.captured", payment), "r1")).status_code == 200
    await bclient.post("/api/v1/indicators", json={"value": "kept.example.com"}, headers=owner.in_org(org))
    sub = (await bclient.get(f"{BILLING}/subscription", headers=owner.in_org(org))).json()
    end = sub["current_period_end"]
    later = utcnow() + timedelta(days=32)
    before = len(razorpay.orders)
    async with billing_app.state.session_factory() as session:
        lines = await renew_due(session, later)
        await session.commit()
    assert len(lines) == 1 and "renewal due" in lines[0], lines
    assert len(razorpay.orders) == before + 1
    sub = (await bclient.get(f"{BILLING}/subscription", headers=owner.in_org(org))).json()
    assert sub["status"] == "past_due" and sub["plan"]["code"] == "pro" and sub["grace_until"] > end
    async with billing_app.state.session_factory() as session:
        await renew_due(session, later + timedelta(days=8))
        await session.commit()
    sub = (await bclient.get(f"{BILLING}/subscription", headers=owner.in_org(org))).json()
    assert (sub["status"], sub["plan"]["code"]) == ("canceled", "free")
    kept = await bclient.get("/api/v1/indicators", headers=owner.in_org(org))
    assert [i["value"] for i in kept.json()["items"]] == ["kept.example.com"]


async def test_downgrade_and_cancel_wait_for_period_end(
    bclient: httpx.AsyncClient, billing_app: Any, razorpay: FakeRazorpay
) -> None:
    """Cancel on a paid period: still Pro now, Free after the period's end."""
    from tests.billing.test_payments import _order, _webhook

    owner, org = await owner_with_org(bclient)
    order = (await _order(bclient, owner, org)).json()
    payment = razorpay.pay(order["razorpay_order_id"])
    await _webhook(bclient, razorpay.event("payment.captured", payment), "c1")
    cancelled = await bclient.post(f"{BILLING}/subscription/cancel", headers=owner.in_org(org))
    assert cancelled.status_code == 200 and cancelled.json()["plan"]["code"] == "pro"
    assert cancelled.json()["pending_plan"] == "free"
    async with billing_app.state.session_factory() as session:
        await renew_due(session, utcnow() + timedelta(days=32))
        await session.commit()
    sub = (await bclient.get(f"{BILLING}/subscription", headers=owner.in_org(org))).json()
    assert (sub["status"], sub["plan"]["code"]) == ("canceled", "free")


async def test_ledger_rows_cannot_be_changed(
    bclient: httpx.AsyncClient, billing_app: Any, razorpay: FakeRazorpay
) -> None:
    """PostgreSQL: the app role may not UPDATE or DELETE ledger entries; SQLite: a trigger refuses updates."""
    from tests.billing.test_payments import _order, _webhook

    owner, org = await owner_with_org(bclient)
    order = (await _order(bclient, owner, org)).json()
    payment = razorpay.pay(order["razorpay_order_id"])
    await _webhook(bclient, razorpay.event("payment.captured", payment), "i1")
    engine = billing_app.state.engine
    statements = ["UPDATE ledger_entries SET amount_paise = 1", "UPDATE billing_invoices SET total_paise = 1"]
    if engine.dialect.name == "postgresql":
        statements.append("DELETE FROM ledger_entries")
    for statement in statements:
        async with engine.connect() as conn:
            if engine.dialect.name == "postgresql":
                await conn.execute(text("SELECT set_config('app.org_id', :o, false)"), {"o": org})
            with pytest.raises(DBAPIError):
                await conn.execute(text(statement))
            await conn.rollback()


async def test_monthly_quota_comes_from_the_plan(bclient: httpx.AsyncClient, billing_app: Any) -> None:
    """The platform's meter counts the org's requests; past the plan's monthly quota → 429."""
    owner, org = await owner_with_org(bclient, "quota")
    await _set_free_limit(billing_app, requests_per_month=6)
    statuses = []
    for _ in range(10):
        statuses.append((await bclient.get(f"{BILLING}/usage", headers=owner.in_org(org))).status_code)
    assert statuses[0] == 200 and 429 in statuses, statuses
    refused = await bclient.get("/api/v1/indicators", headers=owner.in_org(org))
    assert refused.status_code == 429, refused.text
