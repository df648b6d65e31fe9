"""HTTP routes of outbound webhooks."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Request, Response

from raptorflow.accounts.schemas import Page
from raptorflow.auth.deps import require
from raptorflow.auth.permissions import Permission
from raptorflow.auth.principal import OrgContext
from raptorflow.kit.deps import SessionDep
from raptorflow.kit.pagination import CursorParam, LimitParam
from raptorflow.models import Webhook, WebhookDelivery
from raptorflow.webhooks.schemas import (
    DeliveryOut,
    TestQueued,
    WebhookCreate,
    WebhookCreated,
    WebhookOut,
    WebhookUpdate,
)
from raptorflow.webhooks.service import WebhookService

router = APIRouter(prefix="/api/v1/webhooks", tags=["webhooks"])
Manager = Annotated[OrgContext, require(Permission.webhooks_manage)]
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "Not found (or not yours)"}}
ONE = "/{webhook_id}"


def _out(h: Webhook) -> dict[str, Any]:
    return {
        "id": h.id,
        "url": h.url,
        "events": list(h.events or []),
        "min_score": h.min_score,
        "description": h.description,
        "active": h.active,
        "created_by": h.created_by,
        "created_at": h.created_at,
        "updated_at": h.updated_at,
    }


def _delivery_out(d: WebhookDelivery) -> DeliveryOut:
    return DeliveryOut(
        id=d.id,
        webhook_id=d.webhook_id,
        event=d.event,
        status=d.status,
        attempts=d.attempts,
        response_code=d.response_code,
        last_error=d.last_error,
        next_attempt_at=d.next_attempt_at,
        created_at=d.created_at,
        delivered_at=d.delivered_at,
        payload=d.payload,
    )


def _service(request: Request, session: SessionDep, ctx: OrgContext) -> WebhookService:
    return WebhookService(session, ctx, request.app.state.settings)


@router.post("", status_code=201, summary="Subscribe a URL to events")
async def create_webhook(
    body: WebhookCreate, ctx: Manager, session: SessionDep, request: Request, response: Response
) -> WebhookCreated:
    """Create a webhook; the signing secret is in this response only."""
    hook, secret = await _service(request, session, ctx).create(body)
    response.headers["Location"] = f"/api/v1/webhooks/{hook.id}"
    return WebhookCreated(**_out(hook), secret=secret)


@router.get("", summary="List webhooks")
async def list_webhooks(
    ctx: Manager, session: SessionDep, request: Request, limit: LimitParam = 100, cursor: CursorParam = None
) -> Page[WebhookOut]:
    """Webhooks of the org."""
    rows, nxt = await _service(request, session, ctx).page(limit, cursor)
    return Page[WebhookOut](items=[WebhookOut(**_out(h)) for h in rows], next_cursor=nxt)


@router.get(ONE, responses=NOT_FOUND, summary="Get a webhook")
async def get_webhook(
    webhook_id: uuid.UUID, ctx: Manager, session: SessionDep, request: Request
) -> WebhookOut:
    """One webhook."""
    return WebhookOut(**_out(await _service(request, session, ctx).get(webhook_id)))


@router.patch(ONE, responses=NOT_FOUND, summary="Update a webhook")
async def update_webhook(
    webhook_id: uuid.UUID, body: WebhookUpdate, ctx: Manager, session: SessionDep, request: Request
) -> WebhookOut:
    """Change URL, events, score threshold, description or active flag."""
    return WebhookOut(**_out(await _service(request, session, ctx).update(webhook_id, body)))


@router.delete(ONE, status_code=204, responses=NOT_FOUND, summary="Delete a webhook")
async def delete_webhook(
    webhook_id: uuid.UUID, ctx: Manager, session: SessionDep, request: Request
) -> Response:
    """Delete a webhook and its delivery log."""
    await _service(request, session, ctx).delete(webhook_id)
    return Response(status_code=204)


@router.post(ONE + "/test", status_code=202, responses=NOT_FOUND, summary="Send a test event")
async def test_webhook(
    webhook_id: uuid.UUID, ctx: Manager, session: SessionDep, request: Request, response: Response
) -> TestQueued:
    """Queue a signed `webhook.test` delivery; follow it at the returned job."""
    delivery, job_id = await _service(request, session, ctx).send_test(webhook_id)
    response.headers["Location"] = f"/api/v1/jobs/{job_id}"
    return TestQueued(delivery_id=delivery.id, job_id=job_id)


@router.get(ONE + "/deliveries", responses=NOT_FOUND, summary="Delivery log of a webhook")
async def list_deliveries(
    webhook_id: uuid.UUID,
    ctx: Manager,
    session: SessionDep,
    request: Request,
    limit: LimitParam = 100,
    cursor: CursorParam = None,
) -> Page[DeliveryOut]:
    """Deliveries newest first, with response codes and errors."""
    rows, nxt = await _service(request, session, ctx).deliveries(webhook_id, limit, cursor)
    return Page[DeliveryOut](items=[_delivery_out(d) for d in rows], next_cursor=nxt)
