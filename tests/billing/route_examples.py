"""Recipes for tests/test_rbac.py and tests/test_isolation.py to exercise the billing routes.

The billing routes exist only with billing enabled; tests/billing/test_generated.py runs the generated
role-matrix and isolation tests over them against the Razorpay test double, whose handle it puts in
FAKE before they run.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import httpx

from tests.billing.fake_razorpay import FakeRazorpay, checkout_signature, sign
from tests.conftest import Actor

BILLING = "/api/v1/billing"
FAKE: dict[str, FakeRazorpay] = {}


async def _checkout(client: httpx.AsyncClient, owner: Actor, org_id: str) -> dict[str, Any]:
    """An order of Pro (one per org: replayed by its Idempotency-Key) paid once more at Razorpay."""
    made = await client.post(
        f"{BILLING}/orders",
        json={"plan": "pro"},
        headers={**owner.in_org(org_id), "Idempotency-Key": f"matrix-{org_id}"},
    )
    assert made.status_code == 201, made.text
    order = made.json()
    payment = FAKE["server"].pay(order["razorpay_order_id"])
    return {"order": order, "payment": payment}


async def _make_checkout(client: httpx.AsyncClient, owner: Actor, org_id: str) -> str:
    if "server" not in FAKE:  # billing off (the default suite): no billing route can use it
        return str(uuid.uuid4())
    paid = await _checkout(client, owner, org_id)
    order_id, payment_id = paid["order"]["razorpay_order_id"], paid["payment"]["id"]
    return json.dumps(
        {
            "razorpay_order_id": order_id,
            "razorpay_payment_id": payment_id,
            "razorpay_signature": checkout_signature(order_id, payment_id),
        }
    )


async def _make_invoice(client: httpx.AsyncClient, owner: Actor, org_id: str) -> str:
    if "server" not in FAKE:  # billing off (the default suite): no billing route can use it
        return str(uuid.uuid4())
    listed = await client.get(f"{BILLING}/invoices", headers=owner.in_org(org_id))
    if listed.status_code == 200 and listed.json()["items"]:
        return str(listed.json()["items"][0]["id"])
    paid = await _checkout(client, owner, org_id)
    body = FAKE["server"].event("payment.captured", paid["payment"])
    answer = await client.post(
        f"{BILLING}/webhooks/razorpay",
        content=body,
        headers={"X-Razorpay-Signature": sign(body), "X-Razorpay-Event-Id": f"evt_{uuid.uuid4().hex}"},
    )
    assert answer.status_code == 200, answer.text
    listed = await client.get(f"{BILLING}/invoices", headers=owner.in_org(org_id))
    return str(listed.json()["items"][0]["id"])


BODY_EXAMPLES: dict[tuple[str, str], tuple[tuple[str, ...], Callable[[Mapping[str, str]], Any]]] = {
    # "scale": a paid plan above Pro that tests/billing/test_generated.py adds for the matrix.
    ("POST", f"{BILLING}/orders"): ((), lambda ids: {"plan": "scale"}),
    ("POST", f"{BILLING}/payments/verify"): (
        ("billing_checkout",),
        lambda ids: json.loads(ids["billing_checkout"]),
    ),
    ("POST", f"{BILLING}/subscription/change"): ((), lambda ids: {"plan": "free"}),
    ("PUT", f"{BILLING}/profile"): (
        (),
        lambda ids: {"billing_name": "Matrix Ltd", "billing_address": "1 Road", "billing_state": "KA"},
    ),
}
CORE_MAKERS = {"billing_checkout": _make_checkout, "invoice_id": _make_invoice}
