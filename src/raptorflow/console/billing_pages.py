"""Console billing page of an org: plan, usage against its limits, invoices, upgrade through Checkout.

Every rule is the billing service's (what an upgrade costs, which payment counts, when a plan changes);
this module only renders it. Razorpay's checkout.js is the one external script the console loads, and
only on the page that carries an order to pay: that response alone allows checkout.razorpay.com in its
Content-Security-Policy.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from raptorflow.auth.permissions import Permission
from raptorflow.billing import invoices as invoice_docs
from raptorflow.billing import repository as billing_sql
from raptorflow.billing.schemas import PaymentVerify
from raptorflow.billing.service import BillingService
from raptorflow.console.forms import read_form
from raptorflow.console.intel_pages import BIG_ORG
from raptorflow.console.repository import ConsoleRepository
from raptorflow.console.web import CSP, ConsoleRoute, OrgPage, field_errors, form_text, org_page, render
from raptorflow.jobs.usage import requests_this_month
from raptorflow.kit.crypto import random_token
from raptorflow.kit.deps import SessionDep
from raptorflow.kit.errors import NotFound, RaptorFlowError
from raptorflow.kit.logging import get_logger
from raptorflow.kit.tenancy import bind_org

router = APIRouter(prefix="/o/{org_id}/settings", route_class=ConsoleRoute, include_in_schema=False)
Reader = Annotated[OrgPage, org_page(Permission.billing_read)]
Manager = Annotated[OrgPage, org_page(Permission.billing_manage)]
INVOICES_SHOWN = 50
log = get_logger("raptorflow.console")
# Orgs whose indicators this process is recounting (one background count per org at a time).
_recounting: set[uuid.UUID] = set()
_tasks: set[asyncio.Task[None]] = set()
CHECKOUT_JS = "https://checkout.razorpay.com/v1/checkout.js"
# Razorpay's documented Checkout origins: its script, the payment frame and the frame's API calls.
CHECKOUT_CSP = (
    CSP.replace("script-src 'self'", "script-src 'self' https://checkout.razorpay.com")
    + "; frame-src https://api.razorpay.com https://checkout.razorpay.com"
    + "; connect-src 'self' https://api.razorpay.com https://lumberjack.razorpay.com"
)
# The printable invoice is the billing package's self-contained page (inline style, no script).
INVOICE_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; "
    "frame-ancestors 'none'; form-action 'none'"
)


def _service(page: OrgPage, session: Any) -> BillingService:
    return BillingService(session, page.org_id, page.ctx.audit())


def _bar(label: str, entry: dict[str, Any]) -> dict[str, Any]:
    """One usage line: used, limit (None = unlimited) and the share of the limit for the bar."""
    used, limit = entry.get("used"), entry.get("limit")
    percent = None
    if isinstance(used, int) and isinstance(limit, int):
        percent = 100 if limit <= 0 else min(100, round(used * 100 / limit))
    return {"label": label, "used": used, "limit": limit, "percent": percent}


def rupees(paise: int | None) -> str:
    """Integer paise as rupees for display (₹3,500.00); 'custom' when the price is by contract."""
    if paise is None:
        return "custom"
    return f"₹{paise // 100:,}.{paise % 100:02d}"


async def _page(
    request: Request,
    page: OrgPage,
    session: Any,
    *,
    order: dict[str, Any] | None = None,
    errors: dict[str, str] | None = None,
    message: str | None = None,
    status: int = 200,
) -> Response:
    service = _service(page, session)
    if not service.config.enabled:
        return render(request, "settings/billing.html", {"enabled": False}, page=page, status=status)
    sub, plan = await service.subscription()
    requests = await requests_this_month(request.app, page.org_id)
    counted_at: datetime | None = None
    if await ConsoleRepository(session, page.org_id).indicators_at_least(BIG_ORG):
        # COUNT(*) of a million indicators takes most of a second: show the running count the limit
        # checks keep, and refresh it in the background when the limit checks would not trust it.
        usage, counted_at = await service.usage_estimated(requests)
        if service.estimate_stale(counted_at):
            _recount_later(request, page)
    else:
        usage = await service.usage(requests)
    plans = await billing_sql.plans(session)
    # What the page offers; the service decides what an order for it costs, or refuses it.
    upgrades = [p for p in plans if p.rank > plan.rank and p.price_paise]
    renewal = plan if sub.status == "past_due" and plan.price_paise else None
    response = render(
        request,
        "settings/billing.html",
        {
            "enabled": True,
            "sub": sub,
            "plan": plan,
            "pending": "free" if sub.cancel_at_period_end else sub.pending_plan_code,
            "bars": [
                _bar("Members and open invitations", usage["members"]),
                _bar("Indicators", usage["indicators"]),
                _bar(f"API requests in {usage['month']}", usage["requests_this_month"]),
            ],
            "counted_at": counted_at,
            "upgrades": upgrades,
            "renewal": renewal,
            "payments": service.config.razorpay is not None,
            "invoices": await service.repo.invoices(None, INVOICES_SHOWN),
            "order": order,
            "checkout_js": CHECKOUT_JS,
            "idempotency_key": random_token(16),
            "rupees": rupees,
            "errors": errors or {},
            "message": message,
        },
        page=page,
        status=status,
    )
    if order is not None:
        response.headers["Content-Security-Policy"] = CHECKOUT_CSP
    return response


def _recount_later(request: Request, page: OrgPage) -> None:
    """Count the org's indicators exactly in a task of its own (its own session and transaction)."""
    if page.org_id in _recounting:
        return
    _recounting.add(page.org_id)
    factory, org_id, actor = request.app.state.session_factory, page.org_id, page.ctx.audit()

    async def recount() -> None:
        try:
            async with factory() as own:
                await bind_org(own, org_id)
                await BillingService(own, org_id, actor).recount_indicators()
                await own.commit()
        except Exception as exc:  # the next view retries; the page keeps showing the last count
            log.warning("console.usage_recount_failed", org_id=str(org_id), error=type(exc).__name__)
        finally:
            _recounting.discard(org_id)

    task = asyncio.create_task(recount())
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)


@router.get("/billing")
async def billing(request: Request, page: Reader, session: SessionDep) -> Response:
    """Plan, usage bars against the plan's limits, invoices; upgrade buttons when payments are set up."""
    return await _page(request, page, session)


@router.post("/billing/orders")
async def create_order(request: Request, page: Manager, session: SessionDep) -> Response:
    """Create the Razorpay order of an upgrade (or the renewal due) and show its Checkout button."""
    form = await request.form()
    key = form_text(form, "idempotency_key") or None
    try:
        order = await _service(page, session).create_order(form_text(form, "plan"), key)
    except RaptorFlowError as exc:
        await session.rollback()
        return await _page(request, page, session, errors=field_errors(exc), status=exc.status)
    return await _page(request, page, session, order=order)


@router.post("/billing/verify")
async def verify_payment(request: Request, page: Manager, session: SessionDep) -> Response:
    """Checkout's hand-back: the service checks the signature, confirms with Razorpay, credits once."""
    data = read_form(await request.form(), PaymentVerify, tuple(PaymentVerify.model_fields))
    try:
        outcome = await _service(page, session).verify(data.build(PaymentVerify))
    except RaptorFlowError as exc:
        await session.rollback()
        return await _page(request, page, session, errors=field_errors(exc), status=exc.status)
    if outcome.payment.review_reason:
        message = f"Payment received but held for review: {outcome.payment.review_reason}."
    elif outcome.payment.credited_at is not None:
        message = "Payment received: thank you. The new plan is active."
    else:
        message = f"Payment {outcome.payment.status}: the plan changes once Razorpay captures it."
    return await _page(request, page, session, message=message)


@router.get("/billing/invoices/{invoice_id}")
async def invoice(invoice_id: uuid.UUID, page: Reader, session: SessionDep) -> Response:
    """An invoice or credit note as the printable page of the billing package."""
    service = _service(page, session)
    service.require_enabled()
    found = await service.repo.invoice(invoice_id)
    if found is None:
        raise NotFound()
    return HTMLResponse(
        invoice_docs.render_html(found),
        headers={"Content-Security-Policy": INVOICE_CSP, "Cache-Control": "private, no-store"},
    )
