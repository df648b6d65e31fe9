"""SQL of webhooks and their deliveries."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import select

from raptorflow.kit.tenancy import TenantRepository
from raptorflow.models import Webhook, WebhookDelivery


class WebhookRepository(TenantRepository):
    """Webhooks and deliveries of one organization."""

    model = Webhook

    async def add(self, obj: Webhook | WebhookDelivery) -> None:
        """Insert a webhook or a delivery."""
        self.session.add(obj)
        await self.session.flush()

    async def add_all(self, rows: Sequence[WebhookDelivery]) -> None:
        """Insert deliveries in one flush."""
        self.session.add_all(rows)
        await self.session.flush()

    async def get(self, webhook_id: uuid.UUID) -> Webhook | None:
        """One webhook by id."""
        return await self.session.scalar(self.scoped(select(Webhook).where(Webhook.id == webhook_id)))

    async def page(self, after: uuid.UUID | None, limit: int) -> Sequence[Webhook]:
        """Webhooks by id."""
        stmt = self.scoped(select(Webhook))
        if after is not None:
            stmt = stmt.where(Webhook.id > after)
        return (await self.session.scalars(stmt.order_by(Webhook.id).limit(limit))).all()

    async def active(self) -> Sequence[Webhook]:
        """Every active webhook of the org (an org has few)."""
        return (
            await self.session.scalars(self.scoped(select(Webhook).where(Webhook.active.is_(True))))
        ).all()

    async def remove(self, webhook: Webhook) -> None:
        """Delete a webhook (its deliveries go with it)."""
        await self.session.delete(webhook)
        await self.session.flush()

    async def deliveries(
        self, webhook_id: uuid.UUID, before: uuid.UUID | None, limit: int
    ) -> Sequence[WebhookDelivery]:
        """Deliveries of a webhook, newest first."""
        stmt = select(WebhookDelivery).where(
            WebhookDelivery.org_id == self.org_id, WebhookDelivery.webhook_id == webhook_id
        )
        if before is not None:
            stmt = stmt.where(WebhookDelivery.id < before)
        return (await self.session.scalars(stmt.order_by(WebhookDelivery.id.desc()).limit(limit))).all()

    async def deliveries_with_hooks(
        self, ids: Sequence[uuid.UUID]
    ) -> Sequence[tuple[WebhookDelivery, Webhook]]:
        """Pending deliveries among `ids` with their webhooks, one query."""
        stmt = (
            select(WebhookDelivery, Webhook)
            .join(Webhook, Webhook.id == WebhookDelivery.webhook_id)
            .where(
                WebhookDelivery.org_id == self.org_id,
                WebhookDelivery.id.in_(list(ids)),
                WebhookDelivery.status == "pending",
            )
            .order_by(WebhookDelivery.id)
        )
        return [(d, w) for d, w in (await self.session.execute(stmt)).all()]
