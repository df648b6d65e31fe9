"""Billing jobs: renewals at period end (a periodic system task)."""

from __future__ import annotations

from typing import Any

from raptorflow.billing.mode import BillingConfig
from raptorflow.billing.operations import renew_due, use_config
from raptorflow.kit.db import utcnow
from raptorflow.kit.jobs import JobContext, task


@task("billing.renew", periodic_s=3600)
async def renew(ctx: JobContext, payload: dict[str, Any]) -> dict[str, Any]:
    """Renew or downgrade the subscriptions whose period or grace ended (no-op with billing off)."""
    config = BillingConfig.from_settings(ctx.settings)
    if not config.enabled:
        return {"renewed": 0, "billing": "disabled"}
    async with ctx.transaction() as session:
        use_config(session, config)
        lines = await renew_due(session, utcnow())
    return {"renewed": len(lines)}
