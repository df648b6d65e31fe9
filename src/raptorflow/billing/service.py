"""Billing rules: plans in force, limits, subscriptions, orders, payments credited once, refunds.

Services never commit: the request, job or CLI command owns the transaction.
"""

from __future__ import annotations

import calendar
import hashlib
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from raptorflow.audit import service as audit
from raptorflow.audit.service import AuditContext
from raptorflow.billing import invoices, ledger
from raptorflow.billing import repository as billing_sql
from raptorflow.billing.ledger import Posting
from raptorflow.billing.mode import BillingConfig, config_of
from raptorflow.billing.razorpay import PAYMENT_STATES, Gateway, GatewayNotFound, payment_problem
from raptorflow.billing.repository import BillingRepository
from raptorflow.billing.schemas import BillingProfile, PaymentVerify
from raptorflow.kit.db import new_id, utcnow
from raptorflow.kit.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    NotFound,
    RaptorFlowError,
    ServiceUnavailable,
)
from raptorflow.kit.ratelimit import OrgLimits, OrgLimitsHook
from raptorflow.kit.tenancy import bind_org
from raptorflow.models import BillingOrder, Invoice, Organization, Payment, Plan, Subscription

# Payment states in the only order they may move (a late `failed` after `captured` changes nothing).
RANK = {state: rank for rank, state in enumerate(PAYMENT_STATES)}
RESOURCES = {"indicators": "max_indicators", "members": "max_members"}
RECOUNT_AFTER = timedelta(minutes=15)
SAC_SAAS = "998314"  # services accounting code: IT infrastructure and network management services


class BillingDisabled(RaptorFlowError):
    """Billing is off on this installation."""

    status = 404
    title = "Billing is disabled"
    type_slug = "billing-disabled"

    def __init__(self) -> None:
        super().__init__(
            "Billing is disabled on this installation (RAPTORFLOW_BILLING_ENABLED is false): "
            "no plans, limits or payments apply."
        )


class PaymentsNotConfigured(ServiceUnavailable):
    """No Razorpay keys."""

    type_slug = "payments-not-configured"

    def __init__(self) -> None:
        super().__init__("payments are not configured (set RAPTORFLOW_RAZORPAY_KEY_ID and _KEY_SECRET)")


class LimitReached(Forbidden):
    """The plan's limit on a resource would be exceeded."""

    type_slug = "plan-limit"


def add_month(moment: datetime, months: int = 1) -> datetime:
    """The same day `months` later, clamped to the month's last day."""
    month0 = moment.month - 1 + months
    year, month = moment.year + month0 // 12, month0 % 12 + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)


def request_hash(body: dict[str, Any]) -> str:
    """Digest of a request body, key order aside (Idempotency-Key comparisons)."""
    return hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()


async def plan_in_force(session: AsyncSession, org_id: uuid.UUID) -> Plan:
    """The plan whose limits apply to the org (Free when it has no subscription row)."""
    found = await BillingRepository(session, org_id).plan_limits()
    if found is None:
        found = await billing_sql.plan(session, "free")
    if found is None:
        raise ServiceUnavailable(
            "The Free plan is missing; run the migrations or `raptorflow plan set free …`."
        )
    return found


async def ensure_room(
    session: AsyncSession, org_id: uuid.UUID, resource: str, *, adding: int = 1, written: bool = False
) -> None:
    """403 naming the limit and the plan that lifts it when `adding` more would exceed the plan.

    `written`: the `adding` rows are already inserted in this transaction (the count includes them;
    the caller's transaction rolls back on the 403). Costs nothing when billing is disabled (no query).
    """
    if not config_of(session).enabled or adding <= 0:
        return
    field = RESOURCES[resource]
    current = await plan_in_force(session, org_id)
    limit: int | None = getattr(current, field)
    if limit is None:
        return
    repo = BillingRepository(session, org_id)
    if resource == "indicators":
        # COUNT(*) over a big org's indicators costs seconds: a running count answers while it is
        # fresh and clearly under the limit; near the limit or when stale, an exact count decides.
        estimate = await repo.usage_estimate(resource)
        fresh = estimate is not None and estimate.counted_at > utcnow() - RECOUNT_AFTER
        if fresh and estimate is not None and estimate.count + adding <= limit:
            await repo.bump_usage(resource, adding)
            return
        used = await repo.count_indicators() - (adding if written else 0)
        if used + adding <= limit:
            await repo.store_usage(resource, used + adding)
            return
    else:
        used = await repo.count_members() - (adding if written else 0)
        if used + adding <= limit:
            return
    lifting = next(
        (
            p
            for p in await billing_sql.plans(session)
            if p.rank > current.rank and (getattr(p, field) is None or getattr(p, field) >= used + adding)
        ),
        None,
    )
    hint = f" The {lifting.name} plan lifts it." if lifting else ""
    raise LimitReached(
        f"The {current.name} plan allows {limit:,} {resource}; this organization has {used:,} and is adding "
        f"{adding:,}.{hint}",
        extra={
            "limit": resource,
            "limit_value": limit,
            "used": used,
            "plan": current.code,
            "upgrade_to": lifting.code if lifting else None,
        },
    )


@dataclass(frozen=True)
class PaymentOutcome:
    """What applying a payment did."""

    payment: Payment
    credited: bool
    note: str


class BillingService:
    """Billing of one org; never commits."""

    def __init__(self, session: AsyncSession, org_id: uuid.UUID, actor: AuditContext) -> None:
        self.session = session
        self.org_id = org_id
        self.actor = actor
        self.config: BillingConfig = config_of(session)
        self.repo = BillingRepository(session, org_id)

    def require_enabled(self) -> None:
        """Refuse when billing is off."""
        if not self.config.enabled:
            raise BillingDisabled()

    def gateway(self) -> Gateway:
        """The Razorpay gateway, or 503 when no keys are configured."""
        if self.config.razorpay is None:
            raise PaymentsNotConfigured()
        return gateway_for(self.config)

    async def _audit(self, action: str, target: str | uuid.UUID | None, **details: Any) -> None:
        await audit.record(
            self.session,
            self.actor,
            action,
            org_id=self.org_id,
            target_type="billing",
            target_id=target,
            details=details,
        )

    # --- subscription -------------------------------------------------------------------------------

    async def subscription(self) -> tuple[Subscription, Plan]:
        """The org's subscription (created on Free on first read) and its plan."""
        sub = await self.repo.ensure_subscription()
        found = await billing_sql.plan(self.session, sub.plan_code)
        assert found is not None
        return sub, found

    async def set_profile(self, body: BillingProfile) -> Subscription:
        """Billing name, address, state and GSTIN printed on invoices."""
        sub = await self.repo.ensure_subscription(lock=True)
        for key, value in body.model_dump().items():
            setattr(sub, key, value)
        sub.updated_at = utcnow()
        await self.session.flush()
        await self._audit("billing.profile_updated", sub.id, state=body.billing_state)
        return sub

    async def schedule_change(self, code: str) -> Subscription:
        """A downgrade (Free included) at the end of the current period; upgrades go through an order."""
        target = await billing_sql.plan(self.session, code)
        if target is None:
            raise NotFound("No such plan.")
        sub = await self.repo.ensure_subscription(lock=True)
        current = await billing_sql.plan(self.session, sub.plan_code)
        assert current is not None
        if target.code == current.code:
            sub.pending_plan_code = None
            sub.cancel_at_period_end = False
        elif target.rank > current.rank:
            raise Conflict(
                f"{target.name} is an upgrade: create an order (POST /api/v1/billing/orders) "
                "to pay for it now."
            )
        elif sub.current_period_end is None:
            # Nothing was paid for (Free or an operator's plan without a period): change at once.
            sub.plan_code = target.code
            sub.pending_plan_code = None
        else:
            sub.pending_plan_code = target.code
        sub.updated_at = utcnow()
        await self.session.flush()
        await self._audit("billing.plan_change_scheduled", sub.id, plan=target.code)
        return sub

    async def start_trial(self, code: str, days: int) -> Subscription:
        """Operator action: the plan's limits for `days` without payment; unpaid at the end → past_due."""
        target = await billing_sql.plan(self.session, code)
        if target is None:
            raise NotFound("No such plan.")
        if not 1 <= days <= 90:
            raise BadRequest("A trial lasts 1 to 90 days.")
        sub = await self.repo.ensure_subscription(lock=True)
        if sub.status != "active" or (await billing_sql.plan(self.session, sub.plan_code) or target).rank > 0:
            raise Conflict("Only an organization on the Free plan can start a trial.")
        now = utcnow()
        sub.plan_code, sub.status = target.code, "trialing"
        sub.current_period_start, sub.current_period_end = now, now + timedelta(days=days)
        sub.updated_at = now
        await self.session.flush()
        await self._audit("billing.trial_started", sub.id, plan=target.code, days=days)
        return sub

    async def cancel(self) -> Subscription:
        """Cancel at the end of the current period (then Free; data is kept)."""
        sub = await self.repo.ensure_subscription(lock=True)
        if sub.current_period_end is None:
            raise Conflict("Nothing to cancel: the organization is not on a paid period.")
        sub.cancel_at_period_end = True
        sub.updated_at = utcnow()
        await self.session.flush()
        await self._audit("billing.cancel_scheduled", sub.id, at=sub.current_period_end.isoformat())
        return sub

    async def usage(self, requests_this_month: int | None) -> dict[str, Any]:
        """Requests this month, indicators and members against the plan's limits."""
        current = await plan_in_force(self.session, self.org_id)
        return {
            "plan": current.code,
            "month": utcnow().strftime("%Y-%m"),
            "requests_this_month": {"used": requests_this_month, "limit": current.requests_per_month},
            "indicators": {"used": await self.repo.count_indicators(), "limit": current.max_indicators},
            "members": {"used": await self.repo.count_members(), "limit": current.max_members},  # seats
        }

    async def usage_estimated(
        self, requests_this_month: int | None
    ) -> tuple[dict[str, Any], datetime | None]:
        """usage() with the indicators from the running count the limit checks keep (no COUNT(*) of a big
        org), and when that count was last exact (None: never counted, `used` is None too)."""
        current = await plan_in_force(self.session, self.org_id)
        estimate = await self.repo.usage_estimate("indicators")
        return {
            "plan": current.code,
            "month": utcnow().strftime("%Y-%m"),
            "requests_this_month": {"used": requests_this_month, "limit": current.requests_per_month},
            "indicators": {"used": estimate.count if estimate else None, "limit": current.max_indicators},
            "members": {"used": await self.repo.count_members(), "limit": current.max_members},
        }, (estimate.counted_at if estimate else None)

    def estimate_stale(self, counted_at: datetime | None) -> bool:
        """Whether a running count is older than the limit checks trust (then recount it)."""
        return counted_at is None or counted_at <= utcnow() - RECOUNT_AFTER

    async def recount_indicators(self) -> int:
        """Count the org's indicators exactly and store it as the running count (seconds at millions)."""
        used = await self.repo.count_indicators()
        await self.repo.store_usage("indicators", used)
        return used

    # --- orders -------------------------------------------------------------------------------------

    async def _quote(
        self, sub: Subscription, current: Plan, target: Plan
    ) -> tuple[str, int, datetime | None, datetime | None]:
        """(purpose, net paise, period start, period end) of paying for `target` now."""
        if target.price_paise is None:
            raise Conflict(f"The {target.name} plan is priced by contract; contact sales.")
        if target.price_paise == 0:
            raise Conflict("The Free plan needs no payment: use POST /api/v1/billing/subscription/change.")
        if sub.status == "past_due" and target.code == sub.plan_code:
            return "renewal", target.price_paise, sub.current_period_end, None
        if target.rank <= current.rank and sub.status != "trialing":
            raise Conflict(
                f"{target.name} is not an upgrade from {current.name}: "
                "use POST /api/v1/billing/subscription/change."
            )
        now = utcnow()
        paid_period = (
            sub.status == "active"
            and sub.current_period_end is not None
            and sub.current_period_end > now
            and (current.price_paise or 0) > 0
        )
        if not paid_period:
            return "upgrade", target.price_paise, None, None
        assert sub.current_period_end is not None
        # Prorated: the price difference for the part of the period left, in whole paise (floor).
        left = int((sub.current_period_end - now).total_seconds())
        whole = max(1, int((sub.current_period_end - sub.current_period_start).total_seconds()))
        net = (target.price_paise - (current.price_paise or 0)) * left // whole
        if net <= 0:
            raise Conflict("Nothing to pay for this change; it takes effect at the period's end instead.")
        return "upgrade", net, sub.current_period_start, sub.current_period_end

    async def create_order(self, code: str, idempotency_key: str | None) -> dict[str, Any]:
        """A Razorpay order for a plan change (same key and body → same answer; other body → 409)."""
        self.require_enabled()
        body_hash = request_hash({"plan": code})
        if idempotency_key is not None:
            if not (
                0 < len(idempotency_key) <= 255
                and idempotency_key.isascii()
                and idempotency_key.isprintable()
            ):
                raise BadRequest("Idempotency-Key must be 1-255 printable ASCII characters.")
            earlier = await self.repo.order_by_key(idempotency_key)
            if earlier is not None:
                if earlier.request_hash != body_hash:
                    raise Conflict("This Idempotency-Key was used with another request body.")
                return dict(earlier.response)
        target = await billing_sql.plan(self.session, code)
        if target is None:
            raise NotFound("No such plan.")
        sub = await self.repo.ensure_subscription(lock=True)
        current = await billing_sql.plan(self.session, sub.plan_code)
        assert current is not None
        purpose, net, start, end = await self._quote(sub, current, target)
        gateway = self.gateway()
        tax = invoices.gst_of(net, self.config.gst_rate_bps)
        receipt = f"rf_{new_id().hex[:24]}"
        notes = {"org_id": str(self.org_id), "plan": target.code, "purpose": purpose}
        made = await gateway.create_order(net + tax, target.currency, receipt, notes)
        order = await self._store_order(
            made, target, purpose, net, tax, receipt, start, end, idempotency_key, body_hash
        )
        await self._audit(
            "billing.order_created", order.id, plan=target.code, amount_paise=order.amount_paise
        )
        return dict(order.response)

    async def _store_order(
        self,
        made: dict[str, Any],
        target: Plan,
        purpose: str,
        net: int,
        tax: int,
        receipt: str,
        start: datetime | None,
        end: datetime | None,
        idempotency_key: str | None,
        body_hash: str | None,
    ) -> BillingOrder:
        if made.get("amount") != net + tax or made.get("currency") != target.currency or not made.get("id"):
            raise RaptorFlowError("Razorpay created an order that does not match the request.", status=502)
        order = BillingOrder(
            id=new_id(),
            org_id=self.org_id,
            razorpay_order_id=str(made["id"]),
            plan_code=target.code,
            purpose=purpose,
            net_paise=net,
            tax_paise=tax,
            amount_paise=net + tax,
            currency=target.currency,
            receipt=receipt,
            status="created",
            period_start=start,
            period_end=end,
            idempotency_key=idempotency_key,
            request_hash=body_hash,
            created_by=self.actor.actor_user_id,
            created_at=utcnow(),
        )
        assert self.config.razorpay is not None
        order.response = {
            "id": str(order.id),
            "razorpay_order_id": order.razorpay_order_id,
            "razorpay_key_id": self.config.razorpay.key_id,
            "plan": target.code,
            "purpose": purpose,
            "net_paise": net,
            "tax_paise": tax,
            "amount_paise": net + tax,
            "currency": order.currency,
            "receipt": receipt,
            "status": "created",
            "created_at": order.created_at.isoformat(),
        }
        self.session.add(order)
        await self.session.flush()
        return order

    # --- payments -----------------------------------------------------------------------------------

    async def verify(self, body: PaymentVerify) -> PaymentOutcome:
        """Checkout's hand-back: signature over the STORED order id, payment confirmed with the API."""
        self.require_enabled()
        order = await self.repo.order_by_razorpay_id(body.razorpay_order_id)
        if order is None:
            raise NotFound()
        gateway = self.gateway()
        if not gateway.verify_payment(
            order.razorpay_order_id, body.razorpay_payment_id, body.razorpay_signature
        ):
            raise BadRequest("The payment signature does not match this order and payment.")
        try:
            entity = await gateway.fetch_payment(body.razorpay_payment_id)
        except GatewayNotFound:
            raise BadRequest("Razorpay does not know this payment.") from None
        if entity.get("order_id") != order.razorpay_order_id:
            raise BadRequest("The payment belongs to another order.")
        return await self.apply_payment(order, entity, str(entity.get("status", "")), source="verify")

    async def apply_payment(
        self, order: BillingOrder, entity: dict[str, Any], status: str, *, source: str
    ) -> PaymentOutcome:
        """Record a payment state (forward only); credit it once when captured and matching the order."""
        problem = payment_problem(entity)
        if problem or status not in RANK:
            raise BadRequest(problem or "The payment has no known status.")
        pid, amount, currency = str(entity["id"]), int(entity["amount"]), str(entity["currency"])
        await self.repo.insert_payment(order, pid, amount, currency)
        payment = await self.repo.payment(pid, lock=True)
        assert payment is not None
        if payment.order_id != order.id:
            raise BadRequest("The payment belongs to another order.")
        if RANK[status] > RANK[payment.status] and not (payment.credited_at is None and status == "refunded"):
            payment.status = status
            payment.updated_at = utcnow()
        mismatch = amount != order.amount_paise or currency != order.currency
        await self.repo.lock_order(order)
        if order.status == "paid" and payment.credited_at is None and payment.review_reason is None:
            # A second payment of an order already paid is money to give back, not a second credit.
            payment.review_reason = "the order was already paid by another payment"
            await self._audit("billing.payment_flagged", pid, reason=payment.review_reason, source=source)
        if mismatch and payment.review_reason is None and payment.credited_at is None:
            payment.review_reason = (
                f"paid {amount} {currency}, order is {order.amount_paise} {order.currency}"
            )[:300]
            await self.session.flush()
            await self._audit("billing.payment_flagged", pid, reason=payment.review_reason, source=source)
        await self.session.flush()
        credited = False
        if status in ("captured", "refunded") and payment.review_reason is None:
            credited = await self._credit(order, payment, source)
        note = (
            "credited"
            if credited
            else (f"review: {payment.review_reason}" if payment.review_reason else payment.status)
        )
        return PaymentOutcome(payment=payment, credited=credited, note=note)

    async def _credit(self, order: BillingOrder, payment: Payment, source: str) -> bool:
        if not await self.repo.claim_credit(payment.id):
            await self.session.refresh(payment)
            return False
        await self.session.refresh(payment)
        pid = payment.razorpay_payment_id
        target = await billing_sql.plan(self.session, order.plan_code)
        assert target is not None
        charges = [Posting("receivable", "revenue", order.net_paise, order.currency)]
        if order.tax_paise:
            charges.append(Posting("receivable", "gst_payable", order.tax_paise, order.currency))
        charge = await ledger.post(
            self.session, self.org_id, "charge", pid, charges, memo=f"{target.name} plan"
        )
        await ledger.post(
            self.session,
            self.org_id,
            "payment",
            pid,
            [Posting("gateway_clearing", "receivable", payment.amount_paise, payment.currency)],
            memo=f"Razorpay {pid}",
        )
        sub = await self.repo.ensure_subscription(lock=True)
        start, end = self._activate(sub, order, target)
        order.status = "paid"
        label = (
            "renewal" if order.purpose == "renewal" else ("prorated upgrade" if order.period_end else "plan")
        )
        invoice = await invoices.issue(
            self.session,
            self.config,
            org_id=self.org_id,
            kind="invoice",
            source=f"payment:{pid}",
            ledger_transaction_id=charge.id,
            buyer=await self._buyer(sub),
            lines=[
                {
                    "description": f"RaptorFlow {target.name} {label}, {start.date()} to {end.date()}",
                    "sac": SAC_SAAS,
                    "quantity": 1,
                    "amount_paise": order.net_paise,
                }
            ],
            tax_paise=order.tax_paise,
            currency=order.currency,
        )
        await self.session.flush()
        await self._audit(
            "billing.payment_credited",
            pid,
            amount_paise=payment.amount_paise,
            plan=target.code,
            invoice=invoice.number,
            source=source,
        )
        return True

    def _activate(self, sub: Subscription, order: BillingOrder, target: Plan) -> tuple[datetime, datetime]:
        now = utcnow()
        if order.purpose == "renewal" and sub.plan_code == order.plan_code and sub.current_period_end:
            start = sub.current_period_end
        elif order.period_start is not None and order.period_end is not None and order.period_end > now:
            start = order.period_start  # prorated upgrade: the period does not move
        else:
            start = now
        end = (
            order.period_end
            if order.purpose == "upgrade" and order.period_end and order.period_end > now
            else add_month(start)
        )
        sub.plan_code = target.code
        sub.status = "active"
        sub.current_period_start = start
        sub.current_period_end = end
        sub.grace_until = None
        sub.pending_plan_code = None
        sub.cancel_at_period_end = False
        sub.updated_at = now
        return start, end

    async def _buyer(self, sub: Subscription) -> dict[str, Any]:
        org = await self.session.get(Organization, self.org_id)
        return {
            "name": sub.billing_name or (org.name if org else str(self.org_id)),
            "address": sub.billing_address or "",
            "state": sub.billing_state,
            "gstin": sub.gstin,
            "org_id": str(self.org_id),
        }

    async def apply_refund(self, payment: Payment, refund_id: str, amount: int) -> str:
        """Apply a processed refund once: credit note, reversing ledger entries; over-refunds flagged."""
        if amount <= 0:
            return "refund with no amount ignored"
        locked = await self.repo.payment(payment.razorpay_payment_id, lock=True)
        assert locked is not None
        if locked.credited_at is None:
            return "refund of a payment never credited: nothing to reverse"
        if locked.refunded_paise + amount > locked.amount_paise:
            await self._audit("billing.refund_flagged", refund_id, amount_paise=amount)
            return "review: refund exceeds what was paid"
        if not await self.repo.insert_refund(locked, refund_id, amount):
            return "refund already applied"
        order = await self.session.get(BillingOrder, locked.order_id)
        assert order is not None
        tax_part = order.tax_paise * amount // order.amount_paise
        net_part = amount - tax_part
        notes = [Posting("refunds", "receivable", net_part, locked.currency)] if net_part else []
        if tax_part:
            notes.append(Posting("gst_payable", "receivable", tax_part, locked.currency))
        note_txn = await ledger.post(
            self.session, self.org_id, "credit_note", refund_id, notes, memo="refund"
        )
        await ledger.post(
            self.session,
            self.org_id,
            "refund",
            refund_id,
            [Posting("receivable", "gateway_clearing", amount, locked.currency)],
            memo=f"Razorpay refund {refund_id}",
        )
        locked.refunded_paise += amount
        if locked.refunded_paise == locked.amount_paise:
            locked.status = "refunded"
        locked.updated_at = utcnow()
        original: Invoice | None = await self.repo.invoice_for(f"payment:{locked.razorpay_payment_id}")
        against = original.number if original else locked.razorpay_payment_id
        sub = await self.repo.ensure_subscription()
        note = await invoices.issue(
            self.session,
            self.config,
            org_id=self.org_id,
            kind="credit_note",
            source=f"refund:{refund_id}",
            ledger_transaction_id=note_txn.id,
            buyer=await self._buyer(sub),
            lines=[
                {
                    "description": f"Refund against {against}",
                    "sac": SAC_SAAS,
                    "quantity": 1,
                    "amount_paise": net_part,
                }
            ],
            tax_paise=tax_part,
            currency=locked.currency,
            related_invoice_id=original.id if original else None,
        )
        await self.session.flush()
        await self._audit("billing.refund_processed", refund_id, amount_paise=amount, credit_note=note.number)
        return "refund applied"

    # --- renewals -----------------------------------------------------------------------------------

    async def renew(self, now: datetime) -> str:
        """Period end: switch to the pending plan, or create the next charge and enter past_due with
        grace; grace over without payment: back to Free (data kept)."""
        sub = await self.repo.subscription(lock=True)
        if sub is None:
            return "no subscription"
        if sub.status == "past_due" and sub.grace_until is not None and sub.grace_until <= now:
            previous = sub.plan_code
            self._to_free(sub, now)
            await self._audit("billing.downgraded_after_grace", sub.id, previous=previous)
            return "back to free"
        if sub.current_period_end is None or sub.current_period_end > now or sub.status == "past_due":
            return "nothing due"
        target_code = "free" if sub.cancel_at_period_end else (sub.pending_plan_code or sub.plan_code)
        target = await billing_sql.plan(self.session, target_code)
        assert target is not None
        if target.price_paise == 0:
            previous = sub.plan_code
            self._to_free(sub, now, code=target.code)
            await self._audit("billing.plan_changed", sub.id, previous=previous, plan=target.code)
            return f"moved to {target.code}"
        old_end = sub.current_period_end
        sub.plan_code = target.code
        sub.pending_plan_code = None
        if target.price_paise is None:
            # Contract-priced plans are invoiced outside Razorpay: the period simply rolls over.
            sub.current_period_start, sub.current_period_end = old_end, add_month(old_end)
            sub.updated_at = now
            await self._audit("billing.period_rolled", sub.id, plan=target.code)
            return "contract period rolled over"
        sub.status = "past_due"
        sub.grace_until = old_end + timedelta(days=self.config.grace_days)
        sub.updated_at = now
        made = ""
        if self.config.razorpay is not None and await self.repo.open_renewal() is None:
            net = target.price_paise
            tax = invoices.gst_of(net, self.config.gst_rate_bps)
            receipt = f"rf_{new_id().hex[:24]}"
            created = await self.gateway().create_order(
                net + tax,
                target.currency,
                receipt,
                {"org_id": str(self.org_id), "plan": target.code, "purpose": "renewal"},
            )
            order = await self._store_order(
                created, target, "renewal", net, tax, receipt, old_end, None, None, None
            )
            made = f", charge {order.razorpay_order_id}"
        await self.session.flush()
        await self._audit(
            "billing.renewal_due", sub.id, plan=target.code, grace_until=sub.grace_until.isoformat()
        )
        return f"renewal due{made}"

    def _to_free(self, sub: Subscription, now: datetime, code: str = "free") -> None:
        # The paid subscription is over (cancelled, or unpaid past its grace): `canceled`, on a free
        # plan's limits, data kept; a new order starts a new paid subscription.
        sub.plan_code = code
        sub.status = "canceled"
        sub.current_period_start = now
        sub.current_period_end = None
        sub.pending_plan_code = None
        sub.cancel_at_period_end = False
        sub.grace_until = None
        sub.updated_at = now


_GATEWAYS: dict[Any, Gateway] = {}


def gateway_for(config: BillingConfig) -> Gateway:
    """One SDK client per set of keys (it keeps an HTTP connection pool)."""
    assert config.razorpay is not None
    found = _GATEWAYS.get(config.razorpay)
    if found is None:
        found = _GATEWAYS[config.razorpay] = Gateway(config.razorpay)
    return found


def org_limits_hook(factory: async_sessionmaker[AsyncSession]) -> OrgLimitsHook:
    """`app.state.org_limits` when billing is on: the per-minute and monthly limits of the org's plan
    (the platform's RequestLimits caches each answer briefly, so this query runs rarely)."""

    async def org_limits(org_id: uuid.UUID) -> OrgLimits:
        async with factory() as session:
            await bind_org(session, org_id)
            current = await plan_in_force(session, org_id)
            return OrgLimits(current.requests_per_minute, current.requests_per_month)

    return org_limits
