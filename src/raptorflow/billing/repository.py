"""All billing SQL: org-scoped repository, plus the global plan table and webhook inbox."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from raptorflow.kit.db import dialect_name, new_id, utcnow
from raptorflow.kit.tenancy import TenantRepository, cross_tenant
from raptorflow.models import (
    BillingOrder,
    Indicator,
    Invitation,
    Invoice,
    Membership,
    Payment,
    Plan,
    Refund,
    Subscription,
    UsageCount,
    WebhookEvent,
)


def _insert(session: AsyncSession, model: Any) -> Any:
    return pg_insert(model) if dialect_name(session) == "postgresql" else sqlite_insert(model)


async def plans(session: AsyncSession) -> Sequence[Plan]:
    """Every plan, cheapest first."""
    return (await session.execute(select(Plan).order_by(Plan.rank, Plan.code))).scalars().all()


async def plan(session: AsyncSession, code: str) -> Plan | None:
    """One plan by code."""
    return await session.get(Plan, code)


async def inbox_insert(session: AsyncSession, event_id: str, event: str, payload: dict[str, Any]) -> bool:
    """Store an event once; False when its id is already in the inbox (a redelivery)."""
    stmt = (
        _insert(session, WebhookEvent)
        .values(id=new_id(), event_id=event_id, event=event, payload=payload, received_at=utcnow())
        .on_conflict_do_nothing(index_elements=[WebhookEvent.event_id])
        .returning(WebhookEvent.id)
    )
    return (await session.execute(stmt)).first() is not None


async def inbox_done(session: AsyncSession, event_id: str, outcome: str) -> None:
    """Record what processing an event did."""
    await session.execute(
        update(WebhookEvent)
        .where(WebhookEvent.event_id == event_id)
        .values(outcome=outcome[:300], processed_at=utcnow())
    )


async def org_of_order(session: AsyncSession, razorpay_order_id: str) -> uuid.UUID | None:
    """Which org an order belongs to (webhooks arrive without an org)."""
    async with cross_tenant(session):
        found = await session.execute(
            select(BillingOrder.org_id).where(BillingOrder.razorpay_order_id == razorpay_order_id)
        )
        return found.scalar_one_or_none()


async def org_of_payment(session: AsyncSession, razorpay_payment_id: str) -> uuid.UUID | None:
    """Which org a payment belongs to."""
    async with cross_tenant(session):
        found = await session.execute(
            select(Payment.org_id).where(Payment.razorpay_payment_id == razorpay_payment_id)
        )
        return found.scalar_one_or_none()


async def subscriptions_due(session: AsyncSession, now: datetime) -> list[tuple[uuid.UUID, uuid.UUID]]:
    """(org, subscription) whose period ended or whose grace ran out: the renewal job's work list."""
    async with cross_tenant(session):
        rows = await session.execute(
            select(Subscription.org_id, Subscription.id).where(
                ((Subscription.current_period_end.is_not(None)) & (Subscription.current_period_end <= now))
                | ((Subscription.grace_until.is_not(None)) & (Subscription.grace_until <= now))
            )
        )
        return [(o, s) for o, s in rows]


async def orders_by_razorpay_ids(session: AsyncSession, ids: list[str]) -> dict[str, uuid.UUID]:
    """Our orders among Razorpay order ids, with their org (for reconciliation)."""
    if not ids:
        return {}
    async with cross_tenant(session):
        rows = await session.execute(
            select(BillingOrder.razorpay_order_id, BillingOrder.org_id).where(
                BillingOrder.razorpay_order_id.in_(ids)
            )
        )
        return {r: o for r, o in rows}


class BillingRepository(TenantRepository):
    """Billing rows of one org."""

    model = Subscription

    async def subscription(self, *, lock: bool = False) -> Subscription | None:
        """The org's subscription row (None until first needed: the org is on Free)."""
        stmt = select(Subscription).where(Subscription.org_id == self.org_id)
        if lock and dialect_name(self.session) == "postgresql":
            stmt = stmt.with_for_update()
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def ensure_subscription(self, *, lock: bool = False) -> Subscription:
        """The subscription row, created on Free when missing (idempotent under races)."""
        now = utcnow()
        await self.session.execute(
            _insert(self.session, Subscription)
            .values(
                id=new_id(),
                org_id=self.org_id,
                plan_code="free",
                status="active",
                current_period_start=now,
                current_period_end=None,
                cancel_at_period_end=False,
                created_at=now,
                updated_at=now,
            )
            .on_conflict_do_nothing(index_elements=[Subscription.org_id])
        )
        found = await self.subscription(lock=lock)
        assert found is not None
        return found

    async def plan_limits(self) -> Plan | None:
        """The plan in force for the org (None when it has no subscription row: Free)."""
        found = await self.session.execute(
            select(Plan)
            .join(Subscription, Subscription.plan_code == Plan.code)
            .where(Subscription.org_id == self.org_id)
        )
        return found.scalar_one_or_none()

    async def count_indicators(self) -> int:
        """Indicators the org holds."""
        return int(
            (
                await self.session.execute(select(func.count()).where(Indicator.org_id == self.org_id))
            ).scalar_one()
        )

    async def usage_estimate(self, resource: str) -> UsageCount | None:
        """The running count of a resource (None until first counted)."""
        found = await self.session.execute(
            select(UsageCount).where(UsageCount.org_id == self.org_id, UsageCount.resource == resource)
        )
        return found.scalar_one_or_none()

    async def bump_usage(self, resource: str, by: int) -> None:
        """Add to the running count (in the caller's transaction: a rollback takes it back)."""
        await self.session.execute(
            update(UsageCount)
            .where(UsageCount.org_id == self.org_id, UsageCount.resource == resource)
            .values(count=UsageCount.count + by)
            .execution_options(synchronize_session=False)
        )

    async def store_usage(self, resource: str, count: int) -> None:
        """Replace the running count with an exact one."""
        now = utcnow()
        stmt = _insert(self.session, UsageCount).values(
            org_id=self.org_id, resource=resource, count=count, counted_at=now
        )
        await self.session.execute(
            stmt.on_conflict_do_update(
                index_elements=[UsageCount.org_id, UsageCount.resource],
                set_={"count": count, "counted_at": now},
            )
        )

    async def count_members(self) -> int:
        """Seats taken: members plus open invitations (each may turn into a member on sign-up)."""
        members = select(func.count()).where(Membership.org_id == self.org_id).scalar_subquery()
        invited = (
            select(func.count())
            .where(
                Invitation.org_id == self.org_id,
                Invitation.accepted_at.is_(None),
                Invitation.revoked_at.is_(None),
                Invitation.expires_at > utcnow(),
            )
            .scalar_subquery()
        )
        return int((await self.session.execute(select(members + invited))).scalar_one())

    async def order_by_key(self, key: str) -> BillingOrder | None:
        """The order an Idempotency-Key created."""
        found = await self.session.execute(
            select(BillingOrder).where(
                BillingOrder.org_id == self.org_id, BillingOrder.idempotency_key == key
            )
        )
        return found.scalar_one_or_none()

    async def order(self, order_id: uuid.UUID) -> BillingOrder | None:
        """One of the org's orders by our id."""
        found = await self.session.execute(
            select(BillingOrder).where(BillingOrder.org_id == self.org_id, BillingOrder.id == order_id)
        )
        return found.scalar_one_or_none()

    async def order_by_razorpay_id(self, razorpay_order_id: str) -> BillingOrder | None:
        """One of the org's orders by its Razorpay id."""
        found = await self.session.execute(
            select(BillingOrder).where(
                BillingOrder.org_id == self.org_id, BillingOrder.razorpay_order_id == razorpay_order_id
            )
        )
        return found.scalar_one_or_none()

    async def open_renewal(self) -> BillingOrder | None:
        """The unpaid renewal order, if one is waiting."""
        found = await self.session.execute(
            select(BillingOrder)
            .where(
                BillingOrder.org_id == self.org_id,
                BillingOrder.purpose == "renewal",
                BillingOrder.status == "created",
            )
            .order_by(BillingOrder.created_at.desc())
            .limit(1)
        )
        return found.scalar_one_or_none()

    async def lock_order(self, order: BillingOrder) -> None:
        """Serialize payments of one order (PostgreSQL row lock) and reload its status."""
        stmt = select(BillingOrder.status).where(
            BillingOrder.org_id == self.org_id, BillingOrder.id == order.id
        )
        if dialect_name(self.session) == "postgresql":
            stmt = stmt.with_for_update()
        order.status = (await self.session.execute(stmt)).scalar_one()

    async def payment(self, razorpay_payment_id: str, *, lock: bool = False) -> Payment | None:
        """One of the org's payments by Razorpay id (row-locked on PostgreSQL when asked)."""
        stmt = select(Payment).where(
            Payment.org_id == self.org_id, Payment.razorpay_payment_id == razorpay_payment_id
        )
        if lock and dialect_name(self.session) == "postgresql":
            stmt = stmt.with_for_update()
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def insert_payment(
        self, order: BillingOrder, razorpay_payment_id: str, amount: int, currency: str
    ) -> None:
        """Create the payment row once (a concurrent creator wins, nobody fails)."""
        now = utcnow()
        await self.session.execute(
            _insert(self.session, Payment)
            .values(
                id=new_id(),
                org_id=self.org_id,
                order_id=order.id,
                razorpay_payment_id=razorpay_payment_id,
                amount_paise=amount,
                currency=currency,
                status="created",
                refunded_paise=0,
                created_at=now,
                updated_at=now,
            )
            .on_conflict_do_nothing(index_elements=[Payment.razorpay_payment_id])
        )

    async def claim_credit(self, payment_id: uuid.UUID) -> bool:
        """Mark a payment credited; True for exactly one caller, ever (conditional update)."""
        result = await self.session.execute(
            update(Payment)
            .where(Payment.id == payment_id, Payment.credited_at.is_(None), Payment.review_reason.is_(None))
            .values(credited_at=utcnow(), status="captured", updated_at=utcnow())
            .execution_options(synchronize_session=False)
        )
        return bool(getattr(result, "rowcount", 0) == 1)

    async def insert_refund(self, payment: Payment, refund_id: str, amount: int) -> bool:
        """Record a refund once; False when it was already applied."""
        stmt = (
            _insert(self.session, Refund)
            .values(
                id=new_id(),
                org_id=self.org_id,
                payment_id=payment.id,
                razorpay_refund_id=refund_id,
                amount_paise=amount,
                created_at=utcnow(),
            )
            .on_conflict_do_nothing(index_elements=[Refund.razorpay_refund_id])
            .returning(Refund.id)
        )
        return (await self.session.execute(stmt)).first() is not None

    async def invoices(self, after: uuid.UUID | None, limit: int) -> Sequence[Invoice]:
        """Invoices and credit notes, newest first."""
        stmt = select(Invoice).where(Invoice.org_id == self.org_id)
        if after is not None:
            stmt = stmt.where(Invoice.id < after)
        return (await self.session.execute(stmt.order_by(Invoice.id.desc()).limit(limit))).scalars().all()

    async def invoice(self, invoice_id: uuid.UUID) -> Invoice | None:
        """One invoice of the org."""
        found = await self.session.execute(
            select(Invoice).where(Invoice.org_id == self.org_id, Invoice.id == invoice_id)
        )
        return found.scalar_one_or_none()

    async def invoice_for(self, source: str) -> Invoice | None:
        """The invoice issued for a payment or refund."""
        found = await self.session.execute(
            select(Invoice).where(Invoice.org_id == self.org_id, Invoice.source == source)
        )
        return found.scalar_one_or_none()
