"""Orders, Checkout verification, webhooks and invoices against the Razorpay test double (real SDK)."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import httpx
from sqlalchemy import func, select

from raptorflow.billing import ledger
from raptorflow.models import Invoice, LedgerTransaction
from tests.billing.conftest import billing_settings, owner_with_org
from tests.billing.fake_razorpay import WEBHOOK_SECRET_PREVIOUS, FakeRazorpay, checkout_signature, sign
from tests.conftest import Actor

BILLING = "/api/v1/billing"


async def _order(
    http: httpx.AsyncClient, owner: Actor, org: str, plan: str = "pro", **headers: str
) -> httpx.Response:
    return await http.post(f"{BILLING}/orders", json={"plan": plan}, headers={**owner.in_org(org), **headers})


async def _counts(app: Any) -> tuple[int, int, list[str]]:
    async with app.state.session_factory() as session:
        from raptorflow.kit.tenancy import cross_tenant

        async with cross_tenant(session):
            txns = (await session.execute(select(func.count()).select_from(LedgerTransaction))).scalar_one()
            invoices = (await session.execute(select(func.count()).select_from(Invoice))).scalar_one()
            problems = await ledger.check(session)
        await session.rollback()
    return int(txns), int(invoices), problems


async def _webhook(
    http: httpx.AsyncClient, body: bytes, event_id: str, signature: str | None = None
) -> httpx.Response:
    headers = {"Content-Type": "application/json", "X-Razorpay-Event-Id": event_id}
    headers["X-Razorpay-Signature"] = sign(body) if signature is None else signature
    return await http.post(f"{BILLING}/webhooks/razorpay", content=body, headers=headers)


async def test_upgrade_paid_through_checkout_activates_pro_once(
    bclient: httpx.AsyncClient, billing_app: Any, razorpay: FakeRazorpay
) -> None:
    """Order (₹3,500 + 18% GST), Checkout signature verified, plan active, one invoice, ledger balanced."""
    owner, org = await owner_with_org(bclient)
    profile = {"billing_name": "Acme Pvt Ltd", "billing_address": "1 MG Road", "billing_state": "KA"}
    assert (
        await bclient.put(f"{BILLING}/profile", json=profile, headers=owner.in_org(org))
    ).status_code == 200
    made = await _order(bclient, owner, org)
    assert made.status_code == 201, made.text
    order = made.json()
    assert (order["net_paise"], order["tax_paise"], order["amount_paise"]) == (350_000, 63_000, 413_000)
    remote = razorpay.orders[order["razorpay_order_id"]]
    assert remote["amount"] == 413_000 and remote["notes"] == {
        "org_id": org,
        "plan": "pro",
        "purpose": "upgrade",
    }

    payment = razorpay.pay(order["razorpay_order_id"])
    body = {
        "razorpay_order_id": order["razorpay_order_id"],
        "razorpay_payment_id": payment["id"],
        "razorpay_signature": checkout_signature(order["razorpay_order_id"], payment["id"]),
    }
    verified = await bclient.post(f"{BILLING}/payments/verify", json=body, headers=owner.in_org(org))
    assert verified.status_code == 200, verified.text
    assert verified.json()["credited"] is True
    assert verified.json()["subscription"]["plan"]["code"] == "pro"
    assert verified.json()["subscription"]["status"] == "active"
    shown = await bclient.get(made.headers["location"], headers=owner.in_org(org))
    assert shown.status_code == 200 and shown.json()["status"] == "paid", shown.text
    again = await bclient.post(f"{BILLING}/payments/verify", json=body, headers=owner.in_org(org))
    assert again.status_code == 200 and again.json()["credited"] is True
    # The webhook for the same payment arrives later: nothing is credited twice.
    late = await _webhook(bclient, razorpay.event("payment.captured", payment), "evt_" + uuid.uuid4().hex)
    assert late.status_code == 200, late.text

    listed = (await bclient.get(f"{BILLING}/invoices", headers=owner.in_org(org))).json()["items"]
    assert len(listed) == 1
    invoice = listed[0]
    assert invoice["number"].startswith("RF/20") and invoice["number"].endswith("/000001")
    # Buyer in the seller's state (KA): CGST + SGST, no IGST.
    assert (
        invoice["subtotal_paise"],
        invoice["cgst_paise"],
        invoice["sgst_paise"],
        invoice["igst_paise"],
    ) == (
        350_000,
        31_500,
        31_500,
        0,
    )
    assert invoice["total_paise"] == 413_000 and invoice["buyer"]["name"] == "Acme Pvt Ltd"
    page = await bclient.get(f"{BILLING}/invoices/{invoice['id']}/html", headers=owner.in_org(org))
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert invoice["number"] in page.text and "₹4,130.00" in page.text
    txns, invoices, problems = await _counts(billing_app)
    assert (txns, invoices, problems) == (2, 1, [])


async def test_idempotency_key_replays_and_conflicts(
    bclient: httpx.AsyncClient, razorpay: FakeRazorpay
) -> None:
    """Same key and body → same order; same key, other body → 409."""
    owner, org = await owner_with_org(bclient)
    before = len(razorpay.orders)
    first = await _order(bclient, owner, org, **{"Idempotency-Key": "k-1"})
    second = await _order(bclient, owner, org, **{"Idempotency-Key": "k-1"})
    assert first.status_code == second.status_code == 201, second.text
    assert first.json() == second.json()
    assert len(razorpay.orders) == before + 1
    other = await _order(bclient, owner, org, plan="enterprise", **{"Idempotency-Key": "k-1"})
    assert other.status_code == 409, other.text


async def test_verify_refuses_other_orgs_orders_and_bad_signatures(
    bclient: httpx.AsyncClient, razorpay: FakeRazorpay
) -> None:
    """Another org's order is 404 like a random one; a wrong or malformed signature is 400."""
    owner, org = await owner_with_org(bclient, "first")
    other, other_org = await owner_with_org(bclient, "second")
    order = (await _order(bclient, owner, org)).json()
    payment = razorpay.pay(order["razorpay_order_id"])
    good = checkout_signature(order["razorpay_order_id"], payment["id"])
    body = {"razorpay_order_id": order["razorpay_order_id"], "razorpay_payment_id": payment["id"]}
    foreign = await bclient.post(
        f"{BILLING}/payments/verify",
        json={**body, "razorpay_signature": good},
        headers=other.in_org(other_org),
    )
    random = await bclient.post(
        f"{BILLING}/payments/verify",
        json={**body, "razorpay_order_id": "order_doesnotexist", "razorpay_signature": good},
        headers=other.in_org(other_org),
    )
    assert foreign.status_code == random.status_code == 404
    assert {k: v for k, v in foreign.json().items() if k != "request_id"} == {
        k: v for k, v in random.json().items() if k != "request_id"
    }
    for signature in ("0" * 64, "not-hex", "é" * 64, good.upper()):
        bad = await bclient.post(
            f"{BILLING}/payments/verify",
            json={**body, "razorpay_signature": signature},
            headers=owner.in_org(org),
        )
        assert bad.status_code == 400, (signature, bad.text)
    # The signature is over the STORED order id: a payment of another order does not verify here.
    order2 = (await _order(bclient, owner, org, **{"Idempotency-Key": "second"})).json()
    swapped = await bclient.post(
        f"{BILLING}/payments/verify",
        json={
            "razorpay_order_id": order2["razorpay_order_id"],
            "razorpay_payment_id": payment["id"],
            "razorpay_signature": good,
        },
        headers=owner.in_org(org),
    )
    assert swapped.status_code == 400


async def test_webhook_signature_failures_are_400_never_500(
    bclient: httpx.AsyncClient, billing_app: Any, razorpay: FakeRazorpay
) -> None:
    """Byte-flipped body, wrong secret, re-serialized JSON, non-ASCII or missing header → 400."""
    owner, org = await owner_with_org(bclient)
    order = (await _order(bclient, owner, org)).json()
    payment = razorpay.pay(order["razorpay_order_id"])
    body = razorpay.event("payment.captured", payment)
    flipped = bytearray(body)
    flipped[10] ^= 0x01
    reserialized = json.dumps(json.loads(body), indent=1).encode()
    cases = [
        (bytes(flipped), sign(body)),
        (body, sign(body, "wrong-secret")),
        (reserialized, sign(body)),
        (body, sign(body)[:-2]),
    ]
    for content, signature in cases:
        answer = await _webhook(bclient, content, "evt_bad", signature)
        assert answer.status_code == 400, answer.text
        assert answer.headers["content-type"].startswith("application/problem+json")
    raw = await bclient.post(
        f"{BILLING}/webhooks/razorpay",
        content=body,
        headers=[(b"x-razorpay-signature", "é".encode("latin-1") * 64), (b"x-razorpay-event-id", b"e1")],
    )
    assert raw.status_code == 400, raw.text
    missing = await bclient.post(
        f"{BILLING}/webhooks/razorpay", content=body, headers={"X-Razorpay-Event-Id": "e"}
    )
    assert missing.status_code == 400
    assert (await _counts(billing_app))[:2] == (0, 0)
    # The previous secret still verifies during a rotation.
    rotated = await _webhook(bclient, body, "evt_rotated", sign(body, WEBHOOK_SECRET_PREVIOUS))
    assert rotated.status_code == 200 and rotated.json()["status"] == "processed", rotated.text
    assert (await _counts(billing_app))[:2] == (2, 1)


async def test_same_event_five_times_concurrently_credits_once(
    bclient: httpx.AsyncClient, billing_app: Any, razorpay: FakeRazorpay
) -> None:
    """Five concurrent deliveries of one event: one ledger charge + payment, one invoice, all 200."""
    owner, org = await owner_with_org(bclient)
    order = (await _order(bclient, owner, org)).json()
    payment = razorpay.pay(order["razorpay_order_id"])
    body = razorpay.event("payment.captured", payment)
    answers = await asyncio.gather(*(_webhook(bclient, body, "evt_same") for _ in range(5)))
    assert [a.status_code for a in answers] == [200] * 5, [a.text for a in answers]
    assert sorted(a.json()["status"] for a in answers) == ["duplicate"] * 4 + ["processed"]
    # order.paid for the same payment (another event id) comes too: still credited once.
    paid = razorpay.event("order.paid", payment, order=razorpay.orders[order["razorpay_order_id"]])
    assert (await _webhook(bclient, paid, "evt_order_paid")).status_code == 200
    assert await _counts(billing_app) == (2, 1, [])
    sub = (await bclient.get(f"{BILLING}/subscription", headers=owner.in_org(org))).json()
    assert sub["plan"]["code"] == "pro"


async def test_amount_mismatch_is_flagged_not_credited(
    bclient: httpx.AsyncClient, billing_app: Any, razorpay: FakeRazorpay
) -> None:
    """A payment whose amount differs from the order is held for review; the plan does not change."""
    owner, org = await owner_with_org(bclient)
    order = (await _order(bclient, owner, org)).json()
    payment = razorpay.pay(order["razorpay_order_id"], amount=100)
    answer = await _webhook(bclient, razorpay.event("payment.captured", payment), "evt_short")
    assert answer.status_code == 200 and "review" in answer.json()["outcome"], answer.text
    assert (await _counts(billing_app))[:2] == (0, 0)
    sub = (await bclient.get(f"{BILLING}/subscription", headers=owner.in_org(org))).json()
    assert sub["plan"]["code"] == "free"


async def test_late_failure_changes_nothing_and_refund_issues_credit_note(
    bclient: httpx.AsyncClient, billing_app: Any, razorpay: FakeRazorpay
) -> None:
    """payment.failed after capture is ignored; refund.processed → credit note, reversing entries, once."""
    owner, org = await owner_with_org(bclient)
    order = (await _order(bclient, owner, org)).json()
    payment = razorpay.pay(order["razorpay_order_id"])
    assert (await _webhook(bclient, razorpay.event("payment.captured", payment), "e1")).status_code == 200
    failed = await _webhook(bclient, razorpay.event("payment.failed", {**payment, "status": "failed"}), "e2")
    assert failed.status_code == 200 and failed.json()["outcome"] == "captured", failed.text
    refund = {
        "id": "rfnd_1",
        "entity": "refund",
        "amount": 413_000,
        "currency": "INR",
        "payment_id": payment["id"],
    }
    for event_id in ("e3", "e4"):  # two events for one refund id: applied once
        done = await _webhook(bclient, razorpay.event("refund.processed", refund=refund), event_id)
        assert done.status_code == 200, done.text
    items = (await bclient.get(f"{BILLING}/invoices", headers=owner.in_org(org))).json()["items"]
    kinds = sorted(i["kind"] for i in items)
    assert kinds == ["credit_note", "invoice"]
    note = next(i for i in items if i["kind"] == "credit_note")
    assert note["total_paise"] == 413_000 and note["related_invoice_id"] is not None
    assert note["number"].startswith("RF-CN/")
    async with billing_app.state.session_factory() as session:
        from raptorflow.kit.tenancy import bind_org

        await bind_org(session, uuid.UUID(org))
        balances = await ledger.balances(session, uuid.UUID(org))
        await session.rollback()
    assert balances.get(("receivable", "INR"), 0) == 0
    assert balances.get(("gateway_clearing", "INR"), 0) == 0
    assert (await _counts(billing_app))[2] == []


async def test_without_keys_paid_plans_answer_503_and_free_works(
    database_url: str, razorpay: FakeRazorpay, bclient: httpx.AsyncClient
) -> None:
    """No Razorpay keys: orders are 503 "payments are not configured"; reading and Free still work."""
    from raptorflow.app import create_app

    app = create_app(billing_settings(database_url, razorpay, razorpay_key_id=None, razorpay_key_secret=None))
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
            owner, org = await owner_with_org(http)
            answer = await _order(http, owner, org)
            assert answer.status_code == 503 and answer.json()["detail"].startswith(
                "payments are not configured"
            )
            sub = await http.get(f"{BILLING}/subscription", headers=owner.in_org(org))
            assert sub.status_code == 200 and sub.json()["plan"]["code"] == "free"
            free = await http.post(
                f"{BILLING}/subscription/change", json={"plan": "free"}, headers=owner.in_org(org)
            )
            assert free.status_code == 200, free.text
    finally:
        await app.state.engine.dispose()


async def test_reconcile_repairs_a_missed_webhook(
    bclient: httpx.AsyncClient, billing_app: Any, razorpay: FakeRazorpay
) -> None:
    """A captured payment whose webhook never came is found and credited by reconciliation."""
    from raptorflow.billing import operations
    from raptorflow.kit.db import utcnow

    owner, org = await owner_with_org(bclient)
    order = (await _order(bclient, owner, org)).json()
    razorpay.pay(order["razorpay_order_id"])
    async with billing_app.state.session_factory() as session:
        lines = await operations.reconcile(session, billing_app.state.billing, 1, utcnow())
        await session.commit()
    assert any("credited" in line for line in lines), lines
    sub = (await bclient.get(f"{BILLING}/subscription", headers=owner.in_org(org))).json()
    assert sub["plan"]["code"] == "pro"
    async with billing_app.state.session_factory() as session:
        again = await operations.reconcile(session, billing_app.state.billing, 1, utcnow())
        await session.commit()
    assert not any("credited" in line for line in again)
    assert (await _counts(billing_app)) == (2, 1, [])
