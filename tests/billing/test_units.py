"""Pure pieces: GST, financial years, month arithmetic, rupee formatting, proration."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import time_machine

from raptorflow.billing.invoices import financial_year, gst_of, rupees, split_tax
from raptorflow.billing.plans import set_plan
from raptorflow.billing.service import add_month
from tests.billing.conftest import owner_with_org
from tests.billing.fake_razorpay import FakeRazorpay
from tests.conftest import sign_in


def test_gst_split_by_state() -> None:
    """18% of ₹3,500 is ₹630: CGST+SGST within Karnataka, IGST elsewhere or when unknown."""
    assert gst_of(350_000, 1800) == 63_000
    assert gst_of(1, 1800) == 0 and gst_of(3, 1800) == 1  # half-up to the paisa
    assert split_tax(63_001, "KA", "KA") == split_tax(63_001, "KA", "ka")
    same = split_tax(63_001, "KA", "KA")
    assert (same.cgst + same.sgst, same.igst) == (63_001, 0)
    assert split_tax(63_000, "KA", "MH").igst == 63_000
    assert split_tax(63_000, "KA", None).igst == 63_000


@pytest.mark.parametrize(
    ("moment", "year"),
    [
        (datetime(2026, 3, 31, 18, 29, tzinfo=UTC), "2025-26"),  # 23:59 IST on 31 March
        (datetime(2026, 3, 31, 18, 31, tzinfo=UTC), "2026-27"),  # 00:01 IST on 1 April
        (datetime(2099, 12, 1, tzinfo=UTC), "2099-00"),
    ],
)
def test_financial_year_is_indian_april_to_march(moment: datetime, year: str) -> None:
    """Invoice series restart on 1 April, India time."""
    assert financial_year(moment) == year


def test_month_arithmetic_and_rupees() -> None:
    """Periods end on the same day next month (clamped); paise print as rupees without floats."""
    assert add_month(datetime(2026, 1, 31, tzinfo=UTC)) == datetime(2026, 2, 28, tzinfo=UTC)
    assert add_month(datetime(2026, 12, 15, tzinfo=UTC)) == datetime(2027, 1, 15, tzinfo=UTC)
    assert rupees(413_000) == "₹4,130.00" and rupees(5) == "₹0.05" and rupees(-150) == "-₹1.50"


async def test_upgrade_between_paid_plans_is_prorated(
    bclient: httpx.AsyncClient, billing_app: Any, razorpay: FakeRazorpay
) -> None:
    """Halfway through a Pro month, moving to a ₹10,000 plan costs half the difference (+ GST)."""
    from tests.billing.test_payments import _order, _webhook

    async with billing_app.state.session_factory() as session:
        await set_plan(session, "scale", {"name": "Scale", "price_paise": 1_000_000, "rank": 5})
        await session.commit()
    with time_machine.travel(datetime(2026, 6, 1, tzinfo=UTC), tick=False):
        owner, org = await owner_with_org(bclient)
        order = (await _order(bclient, owner, org)).json()
        payment = razorpay.pay(order["razorpay_order_id"])
        await _webhook(bclient, razorpay.event("payment.captured", payment), "p1")
    with time_machine.travel(datetime(2026, 6, 16, tzinfo=UTC), tick=False):  # 15 of 30 days left
        owner = await sign_in(bclient, owner.email)
        upgrade = await _order(bclient, owner, org, plan="scale")
        assert upgrade.status_code == 201, upgrade.text
        assert upgrade.json()["net_paise"] == (1_000_000 - 350_000) // 2
        paid = razorpay.pay(upgrade.json()["razorpay_order_id"])
        await _webhook(bclient, razorpay.event("payment.captured", paid), "p2")
        sub = (await bclient.get("/api/v1/billing/subscription", headers=owner.in_org(org))).json()
    assert sub["plan"]["code"] == "scale"
    assert sub["current_period_end"].startswith("2026-07-01")  # the period did not move
    with time_machine.travel(datetime(2026, 6, 16, tzinfo=UTC), tick=False):
        downgrade = await bclient.post(
            "/api/v1/billing/orders", json={"plan": "pro"}, headers=owner.in_org(org)
        )
    assert downgrade.status_code == 409
