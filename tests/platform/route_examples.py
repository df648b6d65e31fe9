"""Recipes for the generated RBAC/isolation tests: how to make a job (a webhook test delivery)."""

from __future__ import annotations

import httpx

from tests.conftest import Actor

# A URL the SSRF guard accepts at creation; `.invalid` never resolves (RFC 6761), so delivery fails fast.
PUBLIC_URL = "https://hooks.invalid/raptorflow-hook"
BODY_EXAMPLES = {
    ("POST", "/api/v1/webhooks"): ((), lambda ids: {"url": PUBLIC_URL, "events": ["indicator.created"]}),
}


async def _make_job(client: httpx.AsyncClient, owner: Actor, org_id: str) -> str:
    hook = await client.post(
        "/api/v1/webhooks",
        json={"url": PUBLIC_URL, "events": ["sighting.added"]},
        headers=owner.in_org(org_id),
    )
    assert hook.status_code == 201, hook.text
    queued = await client.post(f"/api/v1/webhooks/{hook.json()['id']}/test", headers=owner.in_org(org_id))
    assert queued.status_code == 202, queued.text
    return str(queued.json()["job_id"])


CORE_MAKERS = {"job_id": _make_job}
