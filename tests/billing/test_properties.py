"""Property tests: the ledger always balances, and any order of duplicate or late events credits once."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from raptorflow.app import create_app
from raptorflow.audit.service import AuditContext
from raptorflow.billing import ledger, webhooks
from raptorflow.billing.ledger import LedgerError, Posting
from raptorflow.billing.schemas import PaymentVerify
from raptorflow.billing.service import BillingService
from raptorflow.kit.db import new_id
from raptorflow.kit.tenancy import bind_org, cross_tenant
from raptorflow.models import Invoice, LedgerTransaction, Organization
from raptorflow.models.billing import LEDGER_ACCOUNTS
from tests.billing.conftest import billing_settings, seed_plans
from tests.billing.fake_razorpay import FakeRazorpay, checkout_signature, sign
from tests.conftest import truncate_all

ACTOR = AuditContext(user_agent="property-test")
postings = st.lists(
    st.tuples(
        st.sampled_from((*LEDGER_ACCOUNTS, "cash")),
        st.sampled_from(LEDGER_ACCOUNTS),
        st.integers(min_value=-5, max_value=10**12),
        st.sampled_from(("INR", "USD", "inr")),
    ),
    max_size=6,
)


@given(rows=postings)
def test_postings_balance_or_are_refused(rows: list[tuple[str, str, int, str]]) -> None:
    """Whatever entries are asked for, what is accepted balances per currency and per account sum."""
    accepted = []
    for debit, credit, amount, currency in rows:
        try:
            accepted.append(Posting(debit, credit, amount, currency))
        except LedgerError:
            assert debit == credit or amount <= 0 or debit == "cash" or currency == "inr"
    for debit_total, credit_total in ledger.totals(accepted).values():
        assert debit_total == credit_total
    balance: dict[tuple[str, str], int] = {}
    for p in accepted:
        balance[(p.debit, p.currency)] = balance.get((p.debit, p.currency), 0) + p.amount
        balance[(p.credit, p.currency)] = balance.get((p.credit, p.currency), 0) - p.amount
    for currency in {p.currency for p in accepted}:
        assert sum(v for (_a, c), v in balance.items() if c == currency) == 0


STEPS = ("authorize", "capture", "fail", "order_paid", "refund", "verify", "duplicate")


async def _scenario(app: Any, razorpay: FakeRazorpay, steps: list[tuple[str, int]]) -> None:
    factory = app.state.session_factory
    org_id = new_id()
    async with factory() as session:
        session.add(Organization(id=org_id, name="P", slug=f"p-{uuid.uuid4().hex[:12]}", settings={}))
        await session.flush()
        await bind_org(session, org_id)
        made = await BillingService(session, org_id, ACTOR).create_order("pro", None)
        await session.commit()
    order_id = made["razorpay_order_id"]
    payment = razorpay.pay(order_id)
    refund = {"id": f"rfnd_{uuid.uuid4().hex[:10]}", "entity": "refund", "amount": payment["amount"],
              "currency": "INR", "payment_id": payment["id"]}  # fmt: skip
    bodies = {
        "authorize": razorpay.event("payment.authorized", {**payment, "status": "authorized"}),
        "capture": razorpay.event("payment.captured", payment),
        "fail": razorpay.event("payment.failed", {**payment, "status": "failed"}),
        "order_paid": razorpay.event("order.paid", payment, order=razorpay.orders[order_id]),
        "refund": razorpay.event("refund.processed", payment, refund=refund),
    }
    sent: list[tuple[bytes, str]] = []
    capture_seen = False
    for step, pick in steps:
        async with factory() as session:
            if step == "verify":
                await bind_org(session, org_id)
                body = PaymentVerify(
                    razorpay_order_id=order_id,
                    razorpay_payment_id=payment["id"],
                    razorpay_signature=checkout_signature(order_id, payment["id"]),
                )
                await BillingService(session, org_id, ACTOR).verify(body)
                capture_seen = True
            else:
                if step == "duplicate":
                    if not sent:
                        continue
                    body_bytes, event_id = sent[pick % len(sent)]
                else:
                    body_bytes, event_id = bodies[step], f"evt_{uuid.uuid4().hex}"
                    sent.append((body_bytes, event_id))
                    capture_seen = capture_seen or step in ("capture", "order_paid", "refund")
                await webhooks.receive(session, body_bytes, sign(body_bytes), event_id, ACTOR)
            await session.commit()
        async with factory() as session, cross_tenant(session):
            assert await ledger.check(session) == []
            charges = await session.execute(
                select(LedgerTransaction.kind, func.count())
                .where(LedgerTransaction.org_id == org_id)
                .group_by(LedgerTransaction.kind)
            )
            kinds = dict(charges.all())
            invoices = (
                await session.execute(
                    select(func.count()).select_from(Invoice).where(Invoice.org_id == org_id)
                )
            ).scalar_one()
            await session.rollback()
        assert kinds.get("charge", 0) == kinds.get("payment", 0) == (1 if capture_seen else 0), (steps, kinds)
        assert kinds.get("credit_note", 0) <= 1 and kinds.get("refund", 0) <= 1, kinds
        assert invoices == kinds.get("charge", 0) + kinds.get("credit_note", 0)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(st.tuples(st.sampled_from(STEPS), st.integers(0, 5)), min_size=1, max_size=10))
def test_any_order_of_events_credits_once(
    steps: list[tuple[str, int]], database_url: str, razorpay: FakeRazorpay
) -> None:
    """order/authorize/capture/fail/refund/duplicate/reorder: after every step the ledger balances and
    no payment, refund or invoice was applied twice."""

    async def run() -> None:
        app = create_app(billing_settings(database_url, razorpay))
        try:
            await seed_plans(app)
            await _scenario(app, razorpay, steps)
        finally:
            await app.state.engine.dispose()

    asyncio.run(run())


@pytest.fixture(autouse=True)
def _clean_after(request: pytest.FixtureRequest, database_url: str, razorpay: FakeRazorpay) -> Any:
    """The property test writes outside the per-test client: empty the tables after it."""
    yield
    if request.node.name.startswith("test_any_order"):

        async def clean() -> None:
            app = create_app(billing_settings(database_url, razorpay))
            try:
                await truncate_all(app)
            finally:
                await app.state.engine.dispose()

        asyncio.run(clean())
