"""TAXII objects pages as bytes (`TaxiiReader.page_json`) and the request limits of the TAXII server."""

from __future__ import annotations

import base64
import uuid
from typing import Any

import httpx
import orjson

from raptorflow.app import create_app
from raptorflow.kit.tenancy import bind_org
from raptorflow.models import TaxiiCollection
from raptorflow.sharing.taxii import endpoints, service
from tests.conftest import create_org, make_settings, sign_up

TAXII = "application/taxii+json;version=2.1"
ORGS = "/api/v1/organizations"


def _basic(secret: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"siem:{secret}".encode()).decode(), "Accept": TAXII}


async def _seed(http: httpx.AsyncClient) -> dict[str, Any]:
    owner = await sign_up(http, "taxii-pages@example.com")
    org = await create_org(owner, "taxii-pages", "Taxii Pages")
    items = [
        {"value": f"h{n}.pages.example.com", "tags": ["apt"], "description": 'quote " and \\ and ü'}
        for n in range(30)
    ]
    items += [{"value": f"203.0.113.{n}", "tlp": "green", "classification": "malicious"} for n in range(1, 9)]
    bulk = await http.post("/api/v1/indicators/bulk", json={"items": items}, headers=owner.in_org(org))
    assert bulk.json()["created"] == 38, bulk.text
    late = await http.post(
        "/api/v1/indicators", json={"value": "late.pages.example.com"}, headers=owner.in_org(org)
    )
    assert late.status_code == 201, late.text
    keys = {}
    for role in ("viewer", "editor"):
        made = await http.post(
            f"{ORGS}/{org}/api-keys", json={"name": role, "role": role}, headers=owner.headers
        )
        assert made.status_code == 201, made.text
        keys[role] = made.json()["secret"]
    collections = {}
    for title, body in {
        "all": {},
        "green": {"filter": {"tlp_max": "green"}},
        "inbox": {"can_write": True},
    }.items():
        made = await http.post(
            "/api/v1/taxii-collections", json={"title": title, **body}, headers=owner.in_org(org)
        )
        assert made.status_code == 201, made.text
        collections[title] = made.json()["id"]
    return {"owner": owner, "org": org, "keys": keys, "collections": collections}


def _malware() -> dict[str, Any]:
    return {
        "type": "malware",
        "spec_version": "2.1",
        "id": f"malware--{uuid.uuid4()}",
        "created": "2025-01-02T03:04:05.000Z",
        "modified": "2025-01-02T03:04:05.000Z",
        "name": "PageLoader",
        "is_family": True,
    }


async def test_json_pages_are_the_object_pages_byte_for_byte(client: httpx.AsyncClient, app: Any) -> None:
    """page_json (PostgreSQL's JSON spliced, no per-object step) answers what orjson made of `page`."""
    w = await _seed(client)
    malware = _malware()
    inbox = w["collections"]["inbox"]
    written = await client.post(
        f"/taxii2/taxii-pages/collections/{inbox}/objects/",
        json={"objects": [malware]},
        headers=_basic(w["keys"]["editor"]),
    )
    assert written.status_code == 202, written.text
    org_id = uuid.UUID(w["org"])

    async with app.state.session_factory() as session:
        await bind_org(session, org_id)
        reader = service.TaxiiReader(session, org_id, "Taxii Pages")
        rows = {t: await session.get(TaxiiCollection, uuid.UUID(c)) for t, c in w["collections"].items()}

        async def same(collection: str, match: service.Match, limit: int, cursor: str | None) -> Any:
            row = rows[collection]
            assert row is not None
            page = await reader.page(row, match, limit, cursor, rendered=True)
            fast = await reader.page_json(row, match, limit, cursor)
            assert fast.envelope() == orjson.dumps(endpoints._envelope(page)), (collection, match, cursor)
            assert (fast.first_added, fast.last_added) == (
                (page.added[0], page.added[-1]) if page.added else (None, None)
            )
            return page

        # A walk with next, whole collection and filtered.
        cursor = None
        seen = []
        while True:
            page = await same("all", service.Match(), 7, cursor)
            seen += orjson.loads(orjson.dumps(page.objects))
            if not page.more:
                break
            cursor = page.next
        assert len({o["id"] for o in seen}) == 39
        await same("green", service.Match(), 3, None)
        await same("all", service.Match(), 1000, None)
        # A page that ends exactly at the last object says so; one short of it gives `next`.
        assert not (await same("all", service.Match(), 39, None)).more
        short = await same("all", service.Match(), 38, None)
        assert short.more and short.next
        await same("all", service.Match(), 1, short.next)
        # The match filters, an empty page, and a collection holding a stored (non-indicator) object.
        first = seen[0]
        added = (await reader.page(rows["all"], service.Match(), 1, None)).added[0]
        for match in (
            service.Match(added_after=added),
            service.Match(ids=[first["id"]]),
            service.Match(ids=[first["id"]], versions=[first["modified"]]),
            service.Match(types=["indicator"]),
            service.Match(types=["malware"]),
            service.Match(spec_versions=["2.0"]),
            service.Match(ids=["indicator--00000000-0000-4000-8000-000000000000"]),
        ):
            await same("all", match, 10, None)
        inbox_page = await same("inbox", service.Match(), 1000, None)
        assert orjson.loads(orjson.dumps(inbox_page.objects[-1])) == malware
        await same("inbox", service.Match(types=["malware"]), 1000, None)


async def test_taxii_requests_count_against_the_limits(client: httpx.AsyncClient, database_url: str) -> None:
    """TAXII calls are limited per credential like the REST API: a TAXII 429 with Retry-After."""
    w = await _seed(client)
    limited = create_app(make_settings(database_url, rate_limit_principal_per_minute=3))
    try:
        transport = httpx.ASGITransport(app=limited)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            url = f"/taxii2/taxii-pages/collections/{w['collections']['all']}/objects/"
            viewer = _basic(w["keys"]["viewer"])
            answers = [await http.get(url, params={"limit": 2}, headers=viewer) for _ in range(5)]
            assert [a.status_code for a in answers] == [200, 200, 200, 429, 429]
            # Served pages report the org's budget as the REST API does.
            left = [int(a.headers["x-ratelimit-remaining"]) for a in answers[:3]]
            assert left[0] - 1 == left[1] == left[2] + 1
            assert int(answers[0].headers["x-ratelimit-reset"]) >= 1
            refused = await http.get(url, headers=viewer)
            assert refused.status_code == 429 and refused.headers["content-type"] == TAXII
            assert int(refused.headers["retry-after"]) >= 1
            assert refused.json()["http_status"] == "429"
            discovery = await http.get("/taxii2/", headers=viewer)
            assert discovery.status_code == 429 and discovery.headers["content-type"] == TAXII
    finally:
        await limited.state.engine.dispose()
        if limited.state.direct_pool is not None:
            await limited.state.direct_pool.close()
