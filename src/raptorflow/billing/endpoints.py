"""HTTP routes of billing (mounted when billing is enabled; otherwise `disabled` answers every path)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Header, Request, Response
from fastapi.responses import HTMLResponse

from raptorflow.accounts.schemas import Page
from raptorflow.audit.service import AuditContext
from raptorflow.auth.deps import PublicRoute, require
from raptorflow.auth.permissions import Permission
from raptorflow.auth.principal import OrgContext
from raptorflow.billing import invoices as invoice_docs
from raptorflow.billing import repository as billing_sql
from raptorflow.billing import webhooks
from raptorflow.billing.schemas import (
    BillingProfile,
    InvoiceOut,
    OrderCreate,
    OrderOut,
    PaymentVerify,
    PlanChange,
    PlanList,
    PlanOut,
    SubscriptionOut,
    UsageOut,
    VerifyOut,
    WebhookAck,
)
from raptorflow.billing.service import BillingDisabled, BillingService
from raptorflow.jobs.usage import requests_this_month
from raptorflow.kit.deps import SessionDep
from raptorflow.kit.errors import InvalidInput, NotFound
from raptorflow.kit.middleware import request_id_of
from raptorflow.kit.pagination import CursorParam, LimitParam, decode_cursor, encode_cursor
from raptorflow.models import Invoice, Plan, Subscription

router = APIRouter(prefix="/api/v1/billing", tags=["billing"])
disabled = APIRouter(prefix="/api/v1/billing", tags=["billing"])
Reader = Annotated[OrgContext, require(Permission.billing_read)]
Manager = Annotated[OrgContext, require(Permission.billing_manage)]
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "Not found (or not yours)"}}


def plan_out(p: Plan) -> PlanOut:
    """A plan as the API shows it."""
    return PlanOut(
        code=p.code,
        name=p.name,
        price_paise=p.price_paise,
        currency=p.currency,
        requests_per_minute=p.requests_per_minute,
        requests_per_month=p.requests_per_month,
        max_members=p.max_members,
        max_indicators=p.max_indicators,
        feeds=p.feeds,
        taxii_write=p.taxii_write,
    )


async def _subscription_out(service: BillingService, sub: Subscription | None = None) -> SubscriptionOut:
    if sub is None:
        sub, plan = await service.subscription()
    else:
        found = await billing_sql.plan(service.session, sub.plan_code)
        assert found is not None
        plan = found
    return SubscriptionOut(
        plan=plan_out(plan),
        status=sub.status,
        current_period_start=sub.current_period_start,
        current_period_end=sub.current_period_end,
        pending_plan=("free" if sub.cancel_at_period_end else sub.pending_plan_code),
        cancel_at_period_end=sub.cancel_at_period_end,
        grace_until=sub.grace_until,
        billing_name=sub.billing_name,
        billing_address=sub.billing_address,
        billing_state=sub.billing_state,
        gstin=sub.gstin,
    )


def _service(session: Any, ctx: OrgContext) -> BillingService:
    return BillingService(session, ctx.org_id, ctx.audit())


def _invoice_out(i: Invoice) -> InvoiceOut:
    return InvoiceOut(
        id=i.id,
        number=i.number,
        kind=i.kind,
        issued_at=i.issued_at,
        financial_year=i.financial_year,
        seller=i.seller,
        buyer=i.buyer,
        lines=i.lines,
        subtotal_paise=i.subtotal_paise,
        cgst_paise=i.cgst_paise,
        sgst_paise=i.sgst_paise,
        igst_paise=i.igst_paise,
        total_paise=i.total_paise,
        currency=i.currency,
        related_invoice_id=i.related_invoice_id,
    )


@router.get("/plans", dependencies=[PublicRoute], summary="Plans and their limits")
async def list_plans(session: SessionDep) -> PlanList:
    """Every plan, cheapest first (public: it is the price list)."""
    return PlanList(items=[plan_out(p) for p in await billing_sql.plans(session)])


@router.get("/subscription", summary="The organization's subscription")
async def get_subscription(ctx: Reader, session: SessionDep) -> SubscriptionOut:
    """Plan, state, current period and what changes at its end."""
    return await _subscription_out(_service(session, ctx))


@router.put("/profile", summary="Billing name, address, state and GSTIN")
async def put_profile(body: BillingProfile, ctx: Manager, session: SessionDep) -> SubscriptionOut:
    """Who invoices are addressed to (the state decides CGST+SGST or IGST)."""
    service = _service(session, ctx)
    return await _subscription_out(service, await service.set_profile(body))


@router.post("/subscription/change", summary="Downgrade at the end of the period")
async def change_plan(body: PlanChange, ctx: Manager, session: SessionDep) -> SubscriptionOut:
    """Schedule a cheaper plan (or Free) for the period's end; upgrades are paid through an order."""
    service = _service(session, ctx)
    return await _subscription_out(service, await service.schedule_change(body.plan))


@router.post("/subscription/cancel", summary="Cancel at the end of the period")
async def cancel_subscription(ctx: Manager, session: SessionDep) -> SubscriptionOut:
    """Back to Free when the paid period ends; data is kept."""
    service = _service(session, ctx)
    return await _subscription_out(service, await service.cancel())


@router.get("/usage", summary="Usage against the plan's limits")
async def get_usage(ctx: Reader, session: SessionDep, request: Request) -> UsageOut:
    """Requests this month, indicators and members, each against its limit (null = unlimited)."""
    # The platform's monthly meter (live: Redis shared by every process, or this process without Redis).
    requests = await requests_this_month(request.app, ctx.org_id)
    return UsageOut.model_validate(await _service(session, ctx).usage(requests))


@router.post("/orders", status_code=201, summary="Create a Razorpay order for a plan change")
async def create_order(
    body: OrderCreate,
    ctx: Manager,
    session: SessionDep,
    response: Response,
    idempotency_key: Annotated[str | None, Header(max_length=255)] = None,
) -> OrderOut:
    """An upgrade now (prorated) or the renewal due; `Idempotency-Key` replays the first answer."""
    made = await _service(session, ctx).create_order(body.plan, idempotency_key)
    response.headers["Location"] = f"/api/v1/billing/orders/{made['id']}"
    return OrderOut.model_validate(made)


@router.get("/orders/{order_id}", responses=NOT_FOUND, summary="One order")
async def get_order(order_id: uuid.UUID, ctx: Reader, session: SessionDep) -> OrderOut:
    """An order created for a plan change, with its current status (`created` or `paid`)."""
    order = await _service(session, ctx).repo.order(order_id)
    if order is None:
        raise NotFound()
    return OrderOut.model_validate({**order.response, "status": order.status})


@router.post("/payments/verify", summary="Verify a Checkout payment and activate the plan")
async def verify_payment(body: PaymentVerify, ctx: Manager, session: SessionDep) -> VerifyOut:
    """Signature over the stored order id and the payment id, then the payment is confirmed with Razorpay."""
    service = _service(session, ctx)
    outcome = await service.verify(body)
    return VerifyOut(
        payment_status=outcome.payment.status,
        credited=outcome.payment.credited_at is not None,
        review_reason=outcome.payment.review_reason,
        subscription=await _subscription_out(service),
    )


@router.post("/webhooks/razorpay", dependencies=[PublicRoute], summary="Razorpay webhook receiver")
async def razorpay_webhook(
    request: Request,
    session: SessionDep,
    x_razorpay_signature: Annotated[str | None, Header()] = None,
    x_razorpay_event_id: Annotated[str | None, Header()] = None,
) -> WebhookAck:
    """Signed with the webhook secret over the raw body; each event id is applied once."""
    body = await request.body()
    actor = AuditContext(request_id=request_id_of(request.scope), extra={"source": "razorpay"})
    status, outcome = await webhooks.receive(session, body, x_razorpay_signature, x_razorpay_event_id, actor)
    return WebhookAck(status=status, outcome=outcome)


async def _invoice(session: Any, ctx: OrgContext, invoice_id: uuid.UUID) -> Invoice:
    found = await BillingService(session, ctx.org_id, ctx.audit()).repo.invoice(invoice_id)
    if found is None:
        raise NotFound()
    return found


@router.get("/invoices", summary="Invoices and credit notes")
async def list_invoices(
    ctx: Reader, session: SessionDep, limit: LimitParam = 100, cursor: CursorParam = None
) -> Page[InvoiceOut]:
    """Newest first, cursor-paged."""
    position = decode_cursor(cursor)
    after = None
    if position:
        try:
            after = uuid.UUID(str(position.get("after")))
        except ValueError:
            raise InvalidInput("cursor", "not a cursor returned by this API") from None
    rows = await BillingService(session, ctx.org_id, ctx.audit()).repo.invoices(after, limit)
    nxt = encode_cursor({"after": str(rows[-1].id)}) if len(rows) == limit else None
    return Page[InvoiceOut](items=[_invoice_out(i) for i in rows], next_cursor=nxt)


@router.get("/invoices/{invoice_id}", responses=NOT_FOUND, summary="One invoice")
async def get_invoice(invoice_id: uuid.UUID, ctx: Reader, session: SessionDep) -> InvoiceOut:
    """An invoice or credit note as JSON."""
    return _invoice_out(await _invoice(session, ctx, invoice_id))


@router.get(
    "/invoices/{invoice_id}/html",
    responses=NOT_FOUND,
    response_class=HTMLResponse,
    summary="One invoice as a printable page",
)
async def get_invoice_html(invoice_id: uuid.UUID, ctx: Reader, session: SessionDep) -> HTMLResponse:
    """The invoice as a printable HTML page (print to PDF from the browser)."""
    return HTMLResponse(invoice_docs.render_html(await _invoice(session, ctx, invoice_id)))


@disabled.api_route(
    "/{path:path}",
    methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
    include_in_schema=False,
    dependencies=[PublicRoute],
)
async def billing_disabled(path: str) -> None:
    """Every billing path when billing is off: a problem saying so."""
    raise BillingDisabled()
