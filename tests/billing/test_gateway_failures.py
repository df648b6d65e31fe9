"""Razorpay failing: 5xx, slow and malformed answers, and paging past 100 orders (real SDK, test double)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import razorpay as razorpay_sdk
from razorpay.errors import BadRequestError
from sqlalchemy import func, select

from raptorflow.app import create_app
from raptorflow.billing import ledger, operations
from raptorflow.kit.db import utcnow
from raptorflow.kit.tenancy import cross_tenant
from raptorflow.models import BillingOrder, Invoice, LedgerTransaction
from tests.billing.conftest import billing_settings, owner_with_org, seed_plans
from tests.billing.fake_razorpay import KEY_ID, KEY_SECRET, FakeRazorpay, checkout_signature, sign
from tests.conftest import truncate_all

BILLING = "/api/v1/billing"
PROBLEM = "application/problem+json"


async def _state(app: Any) -> tuple[int, int, int, list[str]]:
    """Orders stored, ledger transactions, invoices, and what the ledger check finds wrong."""
    async with app.state.session_factory() as session:
        async with cross_tenant(session):
            counts = [
                (await session.execute(select(func.count()).select_from(table))).scalar_one()
                for table in (BillingOrder, LedgerTransaction, Invoice)
            ]
            problems = await ledger.check(session)
        await session.rollback()
    return int(counts[0]), int(counts[1]), int(counts[2]), problems


def _assert_gateway_problem(answer: httpx.Response, status: int, slug: str) -> None:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"].startswith(PROBLEM)
    problem = answer.json()
    assert problem["status"] == status and problem["type"].endswith("/" + slug), problem
    assert "Razorpay" in problem["detail"] and "try again" in problem["detail"], problem


@pytest.fixture
async def impatient(
    database_url: str, razorpay: FakeRazorpay
) -> AsyncIterator[tuple[Any, httpx.AsyncClient]]:
    """The billing app waiting at most 0.5 s for Razorpay, and its client."""
    app = create_app(billing_settings(database_url, razorpay, razorpay_timeout_s=0.5))
    await seed_plans(app)
    try:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield app, http
    finally:
        await truncate_all(app)
        await app.state.engine.dispose()


async def test_gateway_errors_and_garbage_are_502_problems_and_store_nothing(
    bclient: httpx.AsyncClient, billing_app: Any, razorpay: FakeRazorpay
) -> None:
    """5xx (JSON or an HTML page) and malformed 200s from Razorpay: a 502 problem naming Razorpay."""
    owner, org = await owner_with_org(bclient)
    faults: list[dict[str, Any]] = [
        {"kind": "status", "status": 500},
        {"kind": "status", "status": 503},
        {"kind": "status", "status": 502},
        {"kind": "html", "status": 502},
        {"kind": "truncated"},
        {"kind": "not-object"},
    ]
    for fault in faults:
        razorpay.fail_next(path="/v1/orders", **fault)
        answer = await bclient.post(f"{BILLING}/orders", json={"plan": "pro"}, headers=owner.in_org(org))
        _assert_gateway_problem(answer, 502, "payment-gateway")
    assert (await _state(billing_app))[:3] == (0, 0, 0)
    made = await bclient.post(f"{BILLING}/orders", json={"plan": "pro"}, headers=owner.in_org(org))
    assert made.status_code == 201, made.text

    # Checkout's hand-back while Razorpay answers nonsense about the payment: Razorpay's fault (502),
    # not the client's (400), and nothing is credited.
    order = made.json()
    payment = razorpay.pay(order["razorpay_order_id"])
    body = {
        "razorpay_order_id": order["razorpay_order_id"],
        "razorpay_payment_id": payment["id"],
        "razorpay_signature": checkout_signature(order["razorpay_order_id"], payment["id"]),
    }
    for fault in [{"kind": "wrong-entity"}, {"kind": "truncated"}, {"kind": "status", "status": 500}]:
        razorpay.fail_next(path="/v1/payments/", **fault)
        answer = await bclient.post(f"{BILLING}/payments/verify", json=body, headers=owner.in_org(org))
        _assert_gateway_problem(answer, 502, "payment-gateway")
    assert (await _state(billing_app))[1:] == (0, 0, [])
    verified = await bclient.post(f"{BILLING}/payments/verify", json=body, headers=owner.in_org(org))
    assert verified.status_code == 200 and verified.json()["credited"] is True, verified.text


async def test_a_verify_that_times_out_then_the_webhook_then_a_retry_credit_once(
    impatient: tuple[Any, httpx.AsyncClient], razorpay: FakeRazorpay
) -> None:
    """Razorpay slower than the timeout: 504 at once; the webhook credits; the retried verify does not."""
    app, http = impatient
    owner, org = await owner_with_org(http, "slow")
    slow = razorpay.fail_next("slow", path="/v1/orders", delay_s=2.0)
    answer = await http.post(f"{BILLING}/orders", json={"plan": "pro"}, headers=owner.in_org(org))
    _assert_gateway_problem(answer, 504, "payment-gateway-timeout")
    assert slow.times == 0 and (await _state(app))[0] == 0

    order = (await http.post(f"{BILLING}/orders", json={"plan": "pro"}, headers=owner.in_org(org))).json()
    payment = razorpay.pay(order["razorpay_order_id"])
    body = {
        "razorpay_order_id": order["razorpay_order_id"],
        "razorpay_payment_id": payment["id"],
        "razorpay_signature": checkout_signature(order["razorpay_order_id"], payment["id"]),
    }
    razorpay.fail_next("slow", path=f"/v1/payments/{payment['id']}", delay_s=2.0)
    timed_out = await http.post(f"{BILLING}/payments/verify", json=body, headers=owner.in_org(org))
    _assert_gateway_problem(timed_out, 504, "payment-gateway-timeout")
    assert (await _state(app))[1:] == (0, 0, [])

    event = razorpay.event("payment.captured", payment)
    headers = {"Content-Type": "application/json", "X-Razorpay-Event-Id": "evt_" + uuid.uuid4().hex}
    hook = await http.post(
        f"{BILLING}/webhooks/razorpay",
        content=event,
        headers={**headers, "X-Razorpay-Signature": sign(event)},
    )
    assert hook.status_code == 200 and hook.json()["status"] == "processed", hook.text
    assert (await _state(app))[1:] == (2, 1, [])

    retried = await http.post(f"{BILLING}/payments/verify", json=body, headers=owner.in_org(org))
    assert retried.status_code == 200, retried.text
    assert retried.json()["credited"] is True
    assert retried.json()["subscription"]["plan"]["code"] == "pro"
    assert (await _state(app))[1:] == (2, 1, [])


def test_the_double_pages_lists_as_razorpay_documents(razorpay: FakeRazorpay) -> None:
    """count ≤ 100 (default 10), skip, from/to inclusive, newest first — through the real SDK."""
    client = razorpay_sdk.Client(auth=(KEY_ID, KEY_SECRET), base_url=razorpay.url)
    base = 1_000_000_000  # 2001: no other test's order is this old
    ids = razorpay.add_orders([base + i for i in range(25)])
    try:
        with pytest.raises(BadRequestError, match="count"):
            client.order.all({"count": 101})
        window = {"from": base + 5, "to": base + 19}
        first = client.order.all(window)
        assert [o["id"] for o in first["items"]] == ids[19:9:-1]  # default count 10, newest first
        rest = client.order.all({**window, "skip": 10, "count": 100})
        assert [o["id"] for o in rest["items"]] == ids[9:4:-1]
    finally:
        for order_id in ids:
            razorpay.orders.pop(order_id)


async def test_reconcile_pages_past_100_orders(
    bclient: httpx.AsyncClient, billing_app: Any, razorpay: FakeRazorpay
) -> None:
    """Our paid order is the oldest of 250 in the window: reconcile still finds and credits it."""
    owner, org = await owner_with_org(bclient)
    order = (await bclient.post(f"{BILLING}/orders", json={"plan": "pro"}, headers=owner.in_org(org))).json()
    now = utcnow()
    since, until = int((now - timedelta(days=1)).timestamp()), int(now.timestamp())
    razorpay.orders[order["razorpay_order_id"]]["created_at"] = since + 1
    razorpay.pay(order["razorpay_order_id"])
    others = razorpay.add_orders(
        [since + 2 + i for i in range(249)] + [since - 60] * 3 + [until + 60] * 3  # 6 outside the window
    )
    asked = len(razorpay.requests)
    try:
        async with billing_app.state.session_factory() as session:
            lines = await operations.reconcile(session, billing_app.state.billing, 1, now)
            await session.commit()
    finally:
        for order_id in others:
            razorpay.orders.pop(order_id)
    assert any(order["razorpay_order_id"] in line and "credited" in line for line in lines), lines
    in_window = sum(1 for o in razorpay.orders.values() if since <= o["created_at"] <= until) + 249
    assert lines[-1] == f"{in_window} orders checked, 1 ours"
    pages = [
        parse_qs(urlsplit(path).query)
        for method, path in razorpay.requests[asked:]
        if method == "GET" and urlsplit(path).path == "/v1/orders"
    ]
    assert all(int(p["count"][0]) <= 100 for p in pages) and len(pages) == in_window // 100 + 1
    sub = (await bclient.get(f"{BILLING}/subscription", headers=owner.in_org(org))).json()
    assert sub["plan"]["code"] == "pro"
    assert (await _state(billing_app))[1:] == (2, 1, [])
