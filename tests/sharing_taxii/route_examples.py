"""Recipes for the generated RBAC/isolation tests: TAXII API roots, collections, objects and statuses."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from typing import Any

import httpx

from raptorflow.sharing.stix.render import stix_uuid
from tests.conftest import Actor
from tests.sharing_stix.route_examples import _bundle

ORGS = "/api/v1/organizations"


def _collection_body(_ids: Mapping[str, str]) -> dict[str, Any]:
    return {"title": f"matrix-{uuid.uuid4().hex[:12]}", "can_read": True, "can_write": True}


def _envelope(ids: Mapping[str, str]) -> dict[str, Any]:
    return {"objects": _bundle(ids)["objects"]}


async def _api_root(client: httpx.AsyncClient, owner: Actor, org_id: str) -> str:
    org = await client.get(f"{ORGS}/{org_id}", headers=owner.headers)
    assert org.status_code == 200, org.text
    return str(org.json()["slug"])


async def _stix_id(client: httpx.AsyncClient, owner: Actor, org_id: str) -> str:
    made = await client.post(
        "/api/v1/indicators",
        json={"value": f"taxii-{uuid.uuid4().hex[:12]}.example.com"},
        headers=owner.in_org(org_id),
    )
    assert made.status_code == 201, made.text
    return f"indicator--{stix_uuid(made.json()['id'])}"


async def _status_id(client: httpx.AsyncClient, owner: Actor, org_id: str) -> str:
    made = await client.post(
        "/api/v1/taxii-collections", json=_collection_body({}), headers=owner.in_org(org_id)
    )
    assert made.status_code == 201, made.text
    slug = await _api_root(client, owner, org_id)
    posted = await client.post(
        f"/taxii2/{slug}/collections/{made.json()['id']}/objects/", json=_envelope({}), headers=owner.headers
    )
    assert posted.status_code == 202, posted.text
    return str(posted.json()["id"])


BODY_EXAMPLES: dict[tuple[str, str], tuple[tuple[str, ...], Callable[[Mapping[str, str]], Any]]] = {
    ("POST", "/api/v1/taxii-collections"): ((), _collection_body),
    ("POST", "/taxii2/{api_root}/collections/{collection_id}/objects/"): ((), _envelope),
}
CORE_MAKERS = {"api_root": _api_root, "stix_id": _stix_id, "status_id": _status_id}
