"""Razorpay webhooks: raw-body signature, the inbox (one row per event id), forward-only application."""

from __future__ import annotations

from typing import Any

import orjson
from sqlalchemy.ext.asyncio import AsyncSession

from raptorflow.audit.service import AuditContext
from raptorflow.billing import repository as billing_sql
from raptorflow.billing.mode import config_of
from raptorflow.billing.repository import BillingRepository
from raptorflow.billing.service import BillingDisabled, BillingService, PaymentsNotConfigured, gateway_for
from raptorflow.kit.errors import BadRequest
from raptorflow.kit.tenancy import bind_org

PAYMENT_EVENTS = {
    "payment.authorized": "authorized",
    "payment.captured": "captured",
    "payment.failed": "failed",
}


class Malformed(Exception):
    """A signed event whose payload lacks what its type promises."""


def _entity(payload: dict[str, Any], name: str) -> dict[str, Any]:
    block = payload.get(name)
    entity = block.get("entity") if isinstance(block, dict) else None
    if not isinstance(entity, dict) or not isinstance(entity.get("id"), str):
        raise Malformed(f"payload.{name}.entity is missing")
    return entity


async def receive(
    session: AsyncSession, body: bytes, signature: str | None, event_id: str | None, actor: AuditContext
) -> tuple[str, str | None]:
    """Verify, store once and apply an event; ('duplicate', None) for a redelivery."""
    config = config_of(session)
    if not config.enabled:
        raise BillingDisabled()
    if config.razorpay is None or not config.razorpay.webhook_secrets:
        raise PaymentsNotConfigured()
    if not gateway_for(config).verify_webhook(body, signature):
        raise BadRequest("The webhook signature does not match the body.")
    if not event_id or len(event_id) > 128 or not event_id.isascii() or not event_id.isprintable():
        raise BadRequest("The x-razorpay-event-id header is missing or malformed.")
    try:
        event = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise BadRequest("The webhook body is not JSON.") from None
    if not isinstance(event, dict) or not isinstance(event.get("event"), str):
        raise BadRequest("The webhook body has no `event`.")
    if not await billing_sql.inbox_insert(session, event_id, event["event"][:64], event):
        return "duplicate", None
    try:
        outcome = await apply_event(session, event, actor)
    except Malformed as exc:
        outcome = f"ignored: {exc}"
    await billing_sql.inbox_done(session, event_id, outcome)
    return ("ignored" if outcome.startswith("ignored") else "processed"), outcome


async def apply_event(session: AsyncSession, event: dict[str, Any], actor: AuditContext) -> str:
    """Apply one stored event to the org it concerns (found from the order or payment id)."""
    name = event["event"]
    payload = event.get("payload")
    if not isinstance(payload, dict):
        raise Malformed("payload is missing")
    if name in PAYMENT_EVENTS or name == "order.paid":
        payment = _entity(payload, "payment")
        order_id = payment.get("order_id")
        if name == "order.paid":
            order_id = _entity(payload, "order")["id"]
        return await _payment(
            session, str(order_id or ""), payment, PAYMENT_EVENTS.get(name, "captured"), actor, name
        )
    if name == "refund.processed":
        refund = _entity(payload, "refund")
        amount = refund.get("amount")
        if type(amount) is not int:
            raise Malformed("refund amount is not an integer")
        payment_id = str(refund.get("payment_id") or "")
        # Deliveries can be reordered: a refund proves the capture, so the payment is applied first.
        if isinstance(payload.get("payment"), dict):
            payment = _entity(payload, "payment")
            await _payment(session, str(payment.get("order_id") or ""), payment, "captured", actor, name)
        org_id = await billing_sql.org_of_payment(session, payment_id)
        if org_id is None:
            return "ignored: payment is not ours"
        await bind_org(session, org_id)
        service = BillingService(session, org_id, actor)
        row = await BillingRepository(session, org_id).payment(payment_id)
        assert row is not None
        return await service.apply_refund(row, refund["id"], amount)
    return f"ignored: {name} is not handled"


async def _payment(
    session: AsyncSession,
    order_id: str,
    entity: dict[str, Any],
    status: str,
    actor: AuditContext,
    source: str,
) -> str:
    org_id = await billing_sql.org_of_order(session, order_id) if order_id else None
    if org_id is None:
        return "ignored: order is not ours"
    await bind_org(session, org_id)
    service = BillingService(session, org_id, actor)
    order = await service.repo.order_by_razorpay_id(order_id)
    assert order is not None
    try:
        outcome = await service.apply_payment(order, entity, status, source=source)
    except BadRequest as exc:
        raise Malformed(exc.detail) from None
    return outcome.note
