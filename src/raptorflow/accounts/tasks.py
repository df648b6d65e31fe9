"""Account jobs: purge the data of a retired organization in bounded batches, then the org itself."""

from __future__ import annotations

from typing import Any

from raptorflow.accounts.repository import PurgeRepository
from raptorflow.accounts.service import PURGE_ORG_TASK
from raptorflow.kit.jobs import JobContext, task
from raptorflow.kit.logging import get_logger

log = get_logger("raptorflow.accounts")
PURGE_BATCH = 5000
# The tables that can hold millions of an org's rows, children before parents, so that no single
# statement cascades over a whole tenant (that is what makes deletes take hours and hold locks).
# Outbound traffic stops first (deliveries, webhooks, feeds). Everything else, small by nature,
# goes with the organization row through its ON DELETE CASCADE foreign keys. The audit chain and
# the ledger are kept: they carry no foreign key to the organization.
PURGE_ORDER = (
    "webhook_deliveries",
    "webhooks",
    "feeds",
    "imports",
    "indicator_history",
    "sightings",
    "relationships",
    "taxii_statuses",
    "stix_objects",
    "indicators",
    "threat_actors",
    "campaigns",
    "reports",
    "vulnerabilities",
)


@task(PURGE_ORG_TASK)
async def purge_org(ctx: JobContext, payload: dict[str, Any]) -> dict[str, Any]:
    """Delete a retired org's rows table by table, one short transaction per batch, then the org.

    Idempotent: a retry (or a second job) starts again where the data ends. The batches are separate
    transactions on purpose: the org is unreachable since the request that retired it, so a partly
    purged org is never visible, and no transaction holds a tenant's worth of row locks. The job row
    belongs to the org and goes with it: the outcome is logged as `org.purged`.
    """
    assert ctx.org_id is not None, "a purge belongs to the org it deletes"
    org_id = ctx.org_id
    async with ctx.transaction() as session:
        retired = await PurgeRepository(session, org_id).retired_at()
    if retired is None:
        # A live org (or one already gone): never purge what was not retired by a deletion.
        return {"purged": False, "reason": "the organization is not being deleted"}
    deleted: dict[str, int] = {}
    for name in PURGE_ORDER:
        deleted[name] = 0
        while True:
            async with ctx.transaction() as session:
                count = await PurgeRepository(session, org_id).delete_batch(name, PURGE_BATCH)
            deleted[name] += count
            await ctx.progress(sum(deleted.values()), None, **{k: v for k, v in deleted.items() if v})
            if count < PURGE_BATCH:
                break
    async with ctx.transaction() as session:
        await PurgeRepository(session, org_id).delete_org()
    counts = {k: v for k, v in deleted.items() if v}
    log.info("org.purged", org_id=str(org_id), job_id=str(ctx.job_id), **counts)
    return {"purged": True, "deleted": counts}
