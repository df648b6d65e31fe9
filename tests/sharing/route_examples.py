"""Recipes for the generated RBAC/isolation tests: bodies of sharing routes, how to make an import."""

from __future__ import annotations

import uuid

import httpx

from tests.conftest import Actor


def _feed(ids: object) -> dict[str, object]:
    return {"name": f"feed-{uuid.uuid4().hex[:12]}", "kind": "text", "url": "https://feeds.invalid/list.txt"}


BODY_EXAMPLES = {
    ("POST", "/api/v1/extract"): ((), lambda ids: {"text": "C2 at evil-matrix[.]com and 203.0.113[.]9"}),
    ("POST", "/api/v1/extract/confirm"): (
        (),
        lambda ids: {"items": [{"value": f"m-{uuid.uuid4().hex[:10]}.example.com"}]},
    ),
    ("POST", "/api/v1/imports"): ((), lambda ids: {"format": "text", "content": "203.0.113.10\n"}),
    ("POST", "/api/v1/feeds"): ((), _feed),
}


async def _make_import(client: httpx.AsyncClient, owner: Actor, org_id: str) -> str:
    made = await client.post(
        "/api/v1/imports", json={"format": "text", "content": "203.0.113.11\n"}, headers=owner.in_org(org_id)
    )
    assert made.status_code == 202, made.text
    return str(made.json()["id"])


CORE_MAKERS = {"import_id": _make_import}
