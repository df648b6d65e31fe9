"""The lookup fast path (intel/lookup/fastpath.py) answers exactly as the FastAPI route does."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from raptorflow.app import create_app
from raptorflow.intel.lookup import fastpath, repository
from raptorflow.intel.lookup.repository import CoalescingFinder
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

    def spy(cls: Any, pool: Any, org_id: Any, *more: Any) -> Any:
        calls.append(str(org_id))
        return original(cls, pool, org_id, *more)

    monkeypatch.setattr(fastpath.LookupService, "on_pool", classmethod(spy))
    return calls


@pytest.fixture
async def fast_client(
    database_url: str, redis_url: str, app: Any
) -> AsyncIterator[Callable[..., Awaitable[httpx.AsyncClient]]]:
    """Clients on apps with Redis and the direct pool (PostgreSQL only), built with given settings;
    everything closed and emptied afterwards."""
    if database_url.startswith("sqlite"):
        pytest.skip("the fast path runs on PostgreSQL's direct pool; SQLite always takes the route")
    built: list[tuple[Any, httpx.AsyncClient]] = []

    async def build(**overrides: Any) -> httpx.AsyncClient:
        fast_app = create_app(make_settings(database_url, redis_url=redis_url, **overrides))
        await fast_app.state.redis.flushdb()
        http = httpx.AsyncClient(transport=httpx.ASGITransport(app=fast_app), base_url="http://t")
        built.append((fast_app, http))
        return http

    yield build
    for fast_app, http in built:
        await http.aclose()
        await fast_app.state.redis.flushdb()
        await fast_app.state.redis.aclose()
        await fast_app.state.engine.dispose()
        if fast_app.state.direct_pool is not None:
            await fast_app.state.direct_pool.close()
    await truncate_all(app)


async def test_fast_lookups_match_the_route(
    fast_client: Callable[..., Awaitable[httpx.AsyncClient]], served_fast: list[str]
) -> None:
    http = await fast_client(rate_limit_principal_per_minute=8)
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
    statuses = [(await http.get("/api/v1/lookup", params=params, headers=key)).status_code for _ in range(4)]
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


async def test_lookups_arriving_together_share_statements(
    fast_client: Callable[..., Awaitable[httpx.AsyncClient]],
    served_fast: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Single lookups of one org that arrive while its statement is in flight go out together in the
    next one; each still gets exactly its own answer (found, expired, archived, linked, unknown), and
    another org's lookups of the same value never share a statement nor an answer."""
    statements: list[tuple[str, int]] = []
    original = repository.find_on_pool

    async def counted(pool: Any, org_id: Any, keys: Any) -> Any:
        statements.append((str(org_id), len(keys)))
        return await original(pool, org_id, keys)

    monkeypatch.setattr(repository, "find_on_pool", counted)
    http = await fast_client()
    owner = await sign_up(http, "together@example.com")
    org = await create_org(owner, "together")
    other = await create_org(owner, "together-other")
    past = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    older = (datetime.now(UTC) - timedelta(days=9)).isoformat()
    items = [{"value": f"host{i}.together.example", "score": 10 + i} for i in range(20)]
    items += [
        {"value": "expired.together.example", "valid_from": older, "valid_until": past},
        {"value": "archived.together.example"},
        {"value": "203.0.113.7", "score": 77, "tags": ["shared"]},
    ]
    made = await http.post("/api/v1/indicators/bulk", json={"items": items}, headers=owner.in_org(org))
    ids = [r["id"] for r in made.json()["results"]]
    archived = await http.post(f"/api/v1/indicators/{ids[21]}/archive", headers=owner.in_org(org))
    assert archived.status_code == 200, archived.text
    actor = await http.post("/api/v1/threat-actors", json={"name": "APT Together"}, headers=owner.in_org(org))
    link = {"source_id": ids[0], "target_id": actor.json()["id"], "relationship_type": "indicates"}
    linked = await http.post("/api/v1/relationships", json=link, headers=owner.in_org(org))
    assert linked.status_code == 201, linked.text
    theirs = {"value": "203.0.113.7", "score": 5, "tags": ["theirs"]}
    assert (
        await http.post("/api/v1/indicators", json=theirs, headers=owner.in_org(other))
    ).status_code == 201
    mine = {"X-API-Key": (await _key(http, owner.headers, org, "viewer"))["secret"]}
    their_key = {"X-API-Key": (await _key(http, owner.headers, other, "viewer"))["secret"]}

    asked = [f"host{i}.together.example" for i in range(20)]
    asked += ["expired.together.example", "archived.together.example", "203.0.113.7"]
    asked += ["unknown.together.example", "hxxp://host3[.]together[.]example/x"]
    # One at a time first (the first use of each key reads it into the cache: the route).
    for key in (mine, their_key):
        assert (
            await http.get("/api/v1/lookup", params={"value": "x.example"}, headers=key)
        ).status_code == 200
    alone = {}
    for value in asked:
        alone[value] = (await http.get("/api/v1/lookup", params={"value": value}, headers=mine)).json()
    their_alone = (
        await http.get("/api/v1/lookup", params={"value": "203.0.113.7"}, headers=their_key)
    ).json()
    assert alone["host0.together.example"]["matches"][0]["related"]["actors"][0]["name"] == "APT Together"
    assert alone["host5.together.example"]["matches"][0]["effective_score"] == 15
    assert not alone["expired.together.example"]["found"]
    assert not alone["archived.together.example"]["found"]
    assert not alone["unknown.together.example"]["found"]
    assert alone["203.0.113.7"]["matches"][0]["tags"] == ["shared"]
    assert their_alone["matches"][0]["tags"] == ["theirs"]

    statements.clear()
    before = len(served_fast)

    async def look(value: str, key: dict[str, str]) -> Any:
        response = await http.get("/api/v1/lookup", params={"value": value}, headers=key)
        assert response.status_code == 200, response.text
        return response.json()

    together = await asyncio.gather(
        *(look(v, mine) for v in asked * 2), *(look("203.0.113.7", their_key) for _ in range(5))
    )
    assert len(served_fast) - before == len(asked) * 2 + 5  # all on the fast path
    for value, answer in zip(asked * 2, together, strict=False):
        assert answer == alone[value], value
    assert all(answer == their_alone for answer in together[len(asked) * 2 :])
    # Fewer statements than lookups, some with several keys; each org's in its own statements.
    assert len(statements) < len(asked) * 2 + 5
    assert max(n for _org, n in statements) > 1
    assert {o for o, _n in statements} == {org, other}


class _StandInPool:
    """A pool whose statements wait for the test, then answer or fail; records the keys of each."""

    def __init__(self, fail: bool) -> None:
        self.fail = fail
        self.calls: list[tuple[uuid.UUID, list[str]]] = []
        self.release = asyncio.Event()

    async def fetch(self, _sql: str, org_id: uuid.UUID, types: list[str], values: list[str]) -> list[Any]:
        self.calls.append((org_id, values))
        await self.release.wait()
        if self.fail:
            raise ConnectionError("database went away")
        return []


@pytest.mark.parametrize("fail", [False, True])
async def test_coalescing_finder_batches_per_org_and_fails_every_waiter(fail: bool) -> None:
    pool = _StandInPool(fail)
    finder = CoalescingFinder(pool)
    org_a, org_b = uuid.uuid4(), uuid.uuid4()
    asks = [(org_a, f"a{i}.example") for i in range(5)] + [(org_b, f"b{i}.example") for i in range(3)]
    tasks = [asyncio.ensure_future(finder.find(org, [("domain", value)])) for org, value in asks]
    await asyncio.sleep(0.01)
    # One statement per org in flight; everything else waits for it.
    assert [(org, values) for org, values in pool.calls] == [(org_a, ["a0.example"]), (org_b, ["b0.example"])]
    pool.release.set()
    outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    # Then the waiting keys of each org went out together, never mixed with the other org's.
    assert sorted((org == org_a, values) for org, values in pool.calls[2:]) == [
        (False, ["b1.example", "b2.example"]),
        (True, ["a1.example", "a2.example", "a3.example", "a4.example"]),
    ]
    if fail:
        assert all(isinstance(o, ConnectionError) for o in outcomes)
    else:
        assert outcomes == [([], {})] * len(asks)
    assert not finder._busy and not finder._waiting
