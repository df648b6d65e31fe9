"""The lookup fast path (intel/lookup/fastpath.py) answers exactly as the FastAPI route does."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from raptorflow.app import create_app
from raptorflow.intel.lookup import fastpath
from tests.conftest import create_org, make_settings, sign_up, truncate_all

ORGS = "/api/v1/organizations"


async def _key(http: httpx.AsyncClient, headers: dict[str, str], org_id: str, role: str) -> dict[str, Any]:
    created = await http.post(f"{ORGS}/{org_id}/api-keys", json={"name": role, "role": role}, headers=headers)
    assert created.status_code == 201, created.text
    return dict(created.json())


@pytest.fixture
def served_fast(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The org ids of lookups the fast path answered."""
    calls: list[str] = []
    original = fastpath.LookupService.on_pool.__func__  # type: ignore[attr-defined]

    def spy(cls: Any, pool: Any, org_id: Any) -> Any:
        calls.append(str(org_id))
        return original(cls, pool, org_id)

    monkeypatch.setattr(fastpath.LookupService, "on_pool", classmethod(spy))
    return calls


async def test_fast_lookups_match_the_route(
    database_url: str, redis_url: str, app: Any, served_fast: list[str]
) -> None:
    if database_url.startswith("sqlite"):
        pytest.skip("the fast path runs on PostgreSQL's direct pool; SQLite always takes the route")
    fast_app = create_app(make_settings(database_url, redis_url=redis_url, rate_limit_principal_per_minute=8))
    await fast_app.state.redis.flushdb()
    try:
        transport = httpx.ASGITransport(app=fast_app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            owner = await sign_up(http, "fast@example.com")
            org = await create_org(owner, "fast")
            other_org = await create_org(owner, "fast-other")
            body = {"value": "evil.example.com", "score": 90, "tags": ["c2"], "classification": "malicious"}
            made = await http.post("/api/v1/indicators", json=body, headers=owner.in_org(org))
            assert made.status_code == 201, made.text
            viewer = await _key(http, owner.headers, org, "viewer")
            key = {"X-API-Key": viewer["secret"]}
            params = {"value": "hxxps://EVIL[.]example[.]com"}

            # First use: the route (the key is read into the cache); then the fast path, same answer.
            slow = await http.get("/api/v1/lookup", params={"value": "evil.example.com"}, headers=key)
            assert slow.status_code == 200 and served_fast == []
            fast = await http.get("/api/v1/lookup", params={"value": "evil.example.com"}, headers=key)
            assert served_fast == [org]
            assert fast.status_code == 200 and fast.json() == slow.json()
            assert fast.json()["matches"][0]["effective_score"] == 90
            assert fast.json()["matches"][0]["tags"] == ["c2"]
            for name in (
                "x-ratelimit-limit",
                "x-ratelimit-remaining",
                "x-request-id",
                "x-content-type-options",
            ):
                assert name in fast.headers, name
            assert fast.headers["cache-control"] == "no-store"
            refanged = await http.get("/api/v1/lookup", params=params, headers=key)
            assert refanged.json()["normalized"] == "https://evil.example.com/"
            assert refanged.json()["type"] == "url" and refanged.json()["found"] is False
            bearer = {"Authorization": "Bearer " + viewer["secret"]}
            assert (await http.get("/api/v1/lookup", params=params, headers=bearer)).status_code == 200
            assert len(served_fast) == 3

            # What the fast path does not decide goes to the route, with the route's errors.
            wrong_org = await http.get(
                "/api/v1/lookup", params=params, headers={**key, "X-Organization-ID": other_org}
            )
            assert wrong_org.status_code == 403
            missing = await http.get("/api/v1/lookup", headers=key)
            assert missing.status_code == 422 and "value" in missing.text
            as_user = await http.get("/api/v1/lookup", params=params, headers=owner.in_org(org))
            assert as_user.status_code == 200
            assert len(served_fast) == 3

            # The credential's limit holds on the fast path too: 8 per minute, whichever path counted.
            statuses = [
                (await http.get("/api/v1/lookup", params=params, headers=key)).status_code for _ in range(4)
            ]
            assert 429 in statuses and statuses.count(200) <= 3, statuses
            refused = await http.get("/api/v1/lookup", params=params, headers=key)
            assert refused.status_code == 429, refused.text
            assert int(refused.headers["retry-after"]) >= 1
            assert refused.headers["x-ratelimit-remaining"] == "0"
            assert refused.headers["content-type"].startswith("application/problem+json")

            # A revoked key stops at once in the process that revoked it (the other ones within 1 s).
            editor = await _key(http, owner.headers, org, "editor")
            ekey = {"X-API-Key": editor["secret"]}
            before = len(served_fast)
            for _ in range(2):
                assert (await http.get("/api/v1/lookup", params=params, headers=ekey)).status_code == 200
            assert len(served_fast) == before + 1  # the first use read the key, the second was fast
            revoked = await http.delete(f"{ORGS}/{org}/api-keys/{editor['id']}", headers=owner.headers)
            assert revoked.status_code == 204
            gone = await http.get("/api/v1/lookup", params=params, headers=ekey)
            assert gone.status_code == 401 and len(served_fast) == before + 1
    finally:
        await fast_app.state.redis.flushdb()
        await fast_app.state.redis.aclose()
        await fast_app.state.engine.dispose()
        if fast_app.state.direct_pool is not None:
            await fast_app.state.direct_pool.close()
        await truncate_all(app)
