"""Cross-org billing work for the operator and the scheduler: renewals and reconciliation."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from raptorflow.audit.service import AuditContext
from raptorflow.billing import repository as billing_sql
from raptorflow.billing.mode import BILLING_INFO, BillingConfig
from raptorflow.billing.service import RANK, BillingService, PaymentsNotConfigured, gateway_for
from raptorflow.kit.db import utcnow
from raptorflow.kit.tenancy import bind_org

__all__ = ["BillingService", "reconcile", "renew_due", "use_config", "utcnow"]

SYSTEM = AuditContext(user_agent="raptorflow-billing")


def use_config(session: AsyncSession, config: BillingConfig) -> None:
    """Give a session made outside the app (CLI, worker) the billing mode."""
    session.info[BILLING_INFO] = config


async def renew_due(session: AsyncSession, now: datetime, actor: AuditContext = SYSTEM) -> list[str]:
    """Renew (or downgrade) every subscription whose period or grace has ended; one line per org."""
    lines = []
    for org_id, _sub_id in await billing_sql.subscriptions_due(session, now):
        await bind_org(session, org_id)
        lines.append(f"{org_id}: {await BillingService(session, org_id, actor).renew(now)}")
    return lines


async def reconcile(
    session: AsyncSession, config: BillingConfig, days: int, now: datetime, actor: AuditContext = SYSTEM
) -> list[str]:
    """Fetch the last `days` of orders and their payments from Razorpay; apply what webhooks missed."""
    if config.razorpay is None:
        raise PaymentsNotConfigured()
    gateway = gateway_for(config)
    since = int((now - timedelta(days=days)).timestamp())
    remote = await gateway.orders_since(since, int(now.timestamp()))
    ours = await billing_sql.orders_by_razorpay_ids(session, [str(o.get("id")) for o in remote])
    lines = []
    for rzp_order_id, org_id in sorted(ours.items()):
        await bind_org(session, org_id)
        service = BillingService(session, org_id, actor)
        order = await service.repo.order_by_razorpay_id(rzp_order_id)
        assert order is not None
        for payment in await gateway.order_payments(rzp_order_id):
            status = str(payment.get("status"))
            if status not in RANK or not isinstance(payment.get("id"), str):
                continue
            outcome = await service.apply_payment(order, payment, status, source="reconcile")
            if outcome.credited or outcome.payment.review_reason:
                lines.append(f"{org_id}: {rzp_order_id} {payment['id']} {outcome.note}")
    lines.append(f"{len(remote)} orders checked, {len(ours)} ours")
    return lines
