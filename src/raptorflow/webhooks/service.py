"""Webhook rules: subscriptions, `emit` for other domains, signed delivery with retries for 24 h."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
import orjson
from sqlalchemy.ext.asyncio import AsyncSession

from raptorflow.audit import service as audit
from raptorflow.auth.principal import OrgContext
from raptorflow.config import Settings
from raptorflow.jobs.service import enqueue
from raptorflow.kit.crypto import random_token, seal, unseal
from raptorflow.kit.db import new_id, utcnow
from raptorflow.kit.errors import InvalidInput, NotFound
from raptorflow.kit.http import OutboundError, UnsafeTarget, check_target, outbound_client
from raptorflow.kit.jobs import org_transaction
from raptorflow.kit.metrics import WEBHOOKS
from raptorflow.kit.pagination import decode_cursor, encode_cursor
from raptorflow.models import Webhook, WebhookDelivery
from raptorflow.webhooks.repository import WebhookRepository
from raptorflow.webhooks.schemas import EVENTS, TEST_EVENT, WebhookCreate, WebhookUpdate
from raptorflow.webhooks.signing import DELIVERY_HEADER, EVENT_HEADER, SECRET_PREFIX, SIGNATURE_HEADER, sign

DELIVER_TASK = "webhooks.deliver"
_SEAL_PURPOSE = "webhook-secret"
RETRY_BASE = timedelta(seconds=30)
RETRY_CAP = timedelta(hours=1)
MAX_ERROR_CHARS = 1000
PARALLEL_SENDS = 8


def _seal_secret(secret: str, settings: Settings) -> str:
    return (
        "v1:" + seal(secret, settings.secret_key, _SEAL_PURPOSE) if settings.secret_key else "plain:" + secret
    )


def open_secret(sealed: str, settings: Settings) -> str:
    """The signing secret of a webhook."""
    kind, _, value = sealed.partition(":")
    if kind == "plain":
        return value
    if not settings.secret_key:
        raise RuntimeError("webhook secrets are sealed but RAPTORFLOW_SECRET_KEY is not set")
    return unseal(value, settings.secret_key, _SEAL_PURPOSE)


def _check_target(url: str, settings: Settings) -> str:
    """Refuse URLs that can never be delivered to (bad scheme, literal private address, localhost)."""
    try:
        return check_target(url, allow_private=settings.outbound_allow_private)
    except UnsafeTarget as exc:
        raise InvalidInput("url", str(exc)) from None


def _check_events(events: list[str]) -> list[str]:
    unknown = [e for e in events if e not in EVENTS]
    if unknown:
        raise InvalidInput("events", f"unknown event {unknown[0]!r}; accepted: {', '.join(EVENTS)}")
    return sorted(set(events))


class WebhookService:
    """Webhooks of one org; never commits."""

    def __init__(self, session: AsyncSession, ctx: OrgContext, settings: Settings) -> None:
        self.session = session
        self.ctx = ctx
        self.settings = settings
        self.repo = WebhookRepository(session, ctx.org_id)

    async def get(self, webhook_id: uuid.UUID) -> Webhook:
        """One webhook, or 404 (also for another org's)."""
        hook = await self.repo.get(webhook_id)
        if hook is None:
            raise NotFound()
        return hook

    async def create(self, body: WebhookCreate) -> tuple[Webhook, str]:
        """Subscribe a URL; returns the webhook and its signing secret (shown once)."""
        secret = SECRET_PREFIX + random_token(24)
        hook = Webhook(
            id=new_id(),
            org_id=self.ctx.org_id,
            url=_check_target(body.url, self.settings),
            events=_check_events(body.events),
            min_score=body.min_score,
            description=body.description,
            active=body.active,
            secret_sealed=_seal_secret(secret, self.settings),
            created_by=self.ctx.principal.user_id,
        )
        await self.repo.add(hook)
        await audit.record(
            self.session, self.ctx.audit(), "webhook.created", org_id=self.ctx.org_id,
            target_type="webhook", target_id=hook.id, details={"url": hook.url, "events": hook.events},
        )  # fmt: skip
        return hook, secret

    async def page(self, limit: int, cursor: str | None) -> tuple[Sequence[Webhook], str | None]:
        """Webhooks by id."""
        values = decode_cursor(cursor)
        after = None
        if values is not None:
            try:
                after = uuid.UUID(str(values["after"]))
            except (KeyError, ValueError):
                raise InvalidInput("cursor", "not a cursor returned by this API") from None
        rows = await self.repo.page(after, limit)
        return rows, encode_cursor({"after": str(rows[-1].id)}) if len(rows) == limit else None

    async def update(self, webhook_id: uuid.UUID, body: WebhookUpdate) -> Webhook:
        """Change URL, events, score threshold, description or active flag."""
        hook = await self.get(webhook_id)
        changes = body.model_dump(exclude_unset=True)
        if "url" in changes:
            changes["url"] = _check_target(changes["url"], self.settings)
        if "events" in changes:
            changes["events"] = _check_events(changes["events"])
        for key, value in changes.items():
            setattr(hook, key, value)
        hook.updated_at = utcnow()
        await self.session.flush()
        await audit.record(
            self.session, self.ctx.audit(), "webhook.updated", org_id=self.ctx.org_id,
            target_type="webhook", target_id=hook.id, details={"fields": sorted(changes)},
        )  # fmt: skip
        return hook

    async def delete(self, webhook_id: uuid.UUID) -> None:
        """Delete a webhook and its delivery log."""
        hook = await self.get(webhook_id)
        await self.repo.remove(hook)
        await audit.record(
            self.session, self.ctx.audit(), "webhook.deleted", org_id=self.ctx.org_id,
            target_type="webhook", target_id=webhook_id,
        )  # fmt: skip

    async def deliveries(
        self, webhook_id: uuid.UUID, limit: int, cursor: str | None
    ) -> tuple[Sequence[WebhookDelivery], str | None]:
        """The delivery log of a webhook, newest first."""
        await self.get(webhook_id)
        values = decode_cursor(cursor)
        before = None
        if values is not None:
            try:
                before = uuid.UUID(str(values["before"]))
            except (KeyError, ValueError):
                raise InvalidInput("cursor", "not a cursor returned by this API") from None
        rows = await self.repo.deliveries(webhook_id, before, limit)
        return rows, encode_cursor({"before": str(rows[-1].id)}) if len(rows) == limit else None

    async def send_test(self, webhook_id: uuid.UUID) -> tuple[WebhookDelivery, uuid.UUID]:
        """Queue a `webhook.test` delivery to this webhook (active or not); returns it and its job id."""
        hook = await self.get(webhook_id)
        now = utcnow()
        delivery = _delivery(hook, TEST_EVENT, {"message": "This is a test delivery from RaptorFlow."}, now)
        await self.repo.add(delivery)
        job = await enqueue(
            self.session, self.ctx.org_id, DELIVER_TASK, {"delivery_ids": [str(delivery.id)]},
            created_by=self.ctx.principal.user_id, max_attempts=1,
        )  # fmt: skip
        return delivery, job.id


def _delivery(hook: Webhook, event: str, data: dict[str, Any], now: datetime) -> WebhookDelivery:
    delivery_id = new_id()
    return WebhookDelivery(
        id=delivery_id,
        org_id=hook.org_id,
        webhook_id=hook.id,
        event=event,
        payload={
            "id": str(delivery_id),
            "event": event,
            "created_at": now.isoformat().replace("+00:00", "Z"),
            "org_id": str(hook.org_id),
            "data": data,
        },
        status="pending",
        attempts=0,
        next_attempt_at=now,
        created_at=now,
    )


async def emit(session: AsyncSession, org_id: uuid.UUID, event: str, data: dict[str, Any]) -> int:
    """Queue `event` for every active webhook of the org subscribed to it; returns how many.

    For indicator events, `data["score"]` is compared with each webhook's `min_score`. Delivery runs
    as a job after the caller's transaction commits (nothing is sent for a rolled-back change).
    """
    return await emit_many(session, org_id, event, [data])


async def emit_many(
    session: AsyncSession,
    org_id: uuid.UUID,
    event: str,
    items: Sequence[dict[str, Any]] | Callable[[], Sequence[dict[str, Any]]],
) -> int:
    """`emit` for many items of one event (a bulk create): one query for the org's webhooks, one job.

    `items` may be a function that builds them, called only when a webhook wants the event: a bulk
    create of 1,000 indicators in an org without webhooks then builds no event data at all.
    """
    if event not in EVENTS:
        raise ValueError(f"unknown webhook event {event!r}")
    if not callable(items) and not items:
        return 0
    hooks = [h for h in await WebhookRepository(session, org_id).active() if event in (h.events or [])]
    if not hooks:
        return 0
    if callable(items):
        items = items()
    now = utcnow()
    rows = [
        _delivery(h, event, data, now)
        for data in items
        for h in hooks
        if not isinstance(data.get("score"), int) or data["score"] >= h.min_score
    ]
    if not rows:
        return 0
    await WebhookRepository(session, org_id).add_all(rows)
    await enqueue(session, org_id, DELIVER_TASK, {"delivery_ids": [str(r.id) for r in rows]}, max_attempts=1)
    return len(rows)


@dataclass
class _Attempt:
    delivery_id: uuid.UUID
    code: int | None = None
    error: str | None = None
    final: bool = False  # retrying cannot help (the target is refused by policy)


async def _send(
    client: Any, url: str, secret: str, delivery: WebhookDelivery, limit: asyncio.Semaphore
) -> _Attempt:
    body = orjson.dumps(delivery.payload)
    headers = {
        "Content-Type": "application/json",
        SIGNATURE_HEADER: sign(secret, body),
        EVENT_HEADER: delivery.event,
        DELIVERY_HEADER: str(delivery.id),
    }
    async with limit:
        try:
            response = await client.request("POST", url, headers=headers, content=body)
        except UnsafeTarget as exc:
            return _Attempt(delivery.id, None, f"UnsafeTarget: {exc}"[:MAX_ERROR_CHARS], final=True)
        except (OutboundError, httpx.HTTPError, OSError) as exc:
            return _Attempt(delivery.id, None, f"{type(exc).__name__}: {exc}"[:MAX_ERROR_CHARS])
    if 200 <= response.status_code < 300:
        return _Attempt(delivery.id, response.status_code)
    return _Attempt(delivery.id, response.status_code, f"HTTP {response.status_code}")


def next_attempt(attempts: int, created_at: datetime, now: datetime, window: timedelta) -> datetime | None:
    """When to try again after `attempts` failures (30 s, 1 min, 2 min … ≤ 1 h), or None past the window."""
    delay = min(RETRY_CAP, RETRY_BASE * (2 ** max(0, attempts - 1)))
    at = now + delay
    return at if at <= created_at + window else None


async def deliver(
    session_factory: Any, org_id: uuid.UUID, settings: Settings, delivery_ids: Sequence[uuid.UUID]
) -> dict[str, Any]:
    """Send pending deliveries once each, record the answers, schedule retries; a job's result."""
    async with org_transaction(session_factory, org_id) as session:
        pairs = await WebhookRepository(session, org_id).deliveries_with_hooks(delivery_ids)
        work = [(d, h.url, open_secret(h.secret_sealed, settings)) for d, h in pairs]
    client = outbound_client(settings)
    try:
        limit = asyncio.Semaphore(PARALLEL_SENDS)
        attempts = await asyncio.gather(*(_send(client, url, secret, d, limit) for d, url, secret in work))
    finally:
        await client.aclose()
    by_id = {a.delivery_id: a for a in attempts}
    window = timedelta(hours=settings.webhook_retry_hours)
    summary: dict[str, Any] = {"delivered": 0, "retrying": 0, "failed": 0, "deliveries": []}
    async with org_transaction(session_factory, org_id) as session:
        repo = WebhookRepository(session, org_id)
        for delivery, _hook in await repo.deliveries_with_hooks([d.id for d, _u, _s in work]):
            outcome = by_id[delivery.id]
            now = utcnow()
            delivery.attempts += 1
            delivery.response_code = outcome.code
            delivery.last_error = outcome.error
            if outcome.error is None:
                delivery.status, delivery.delivered_at, delivery.next_attempt_at = "succeeded", now, None
                summary["delivered"] += 1
            else:
                retry_at = next_attempt(delivery.attempts, delivery.created_at, now, window)
                if retry_at is None or outcome.final or delivery.event == TEST_EVENT:
                    delivery.status, delivery.next_attempt_at = "failed", None
                    summary["failed"] += 1
                else:
                    delivery.next_attempt_at = retry_at
                    summary["retrying"] += 1
            WEBHOOKS.labels("succeeded" if outcome.error is None else "failed").inc()
            summary["deliveries"].append(
                {"id": str(delivery.id), "status": delivery.status, "response_code": outcome.code,
                 "error": outcome.error}
            )  # fmt: skip
    return summary
