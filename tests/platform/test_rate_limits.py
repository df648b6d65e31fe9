"""Rate limits per org, per credential and per IP, the monthly quota, shared Redis storage, fail-open."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import redis
from limits import RateLimitItemPerMinute
from redis.asyncio import Redis as AsyncRedis

from raptorflow.app import create_app
from raptorflow.jobs.execution import execute_system
from raptorflow.jobs.usage import FLUSH_TASK, requests_this_month
from raptorflow.kit.metrics import LIMITER_UNAVAILABLE
from raptorflow.kit.ratelimit import (
    USAGE_KEY,
    USAGE_ORGS_KEY,
    OrgLimits,
    RedisWindowLimiter,
    month_of,
    seconds_to_next_month,
)
from tests.conftest import create_org, make_settings, require_service, sign_up, truncate_all
from tests.platform.conftest import TEST_REDIS_DB_URL

AppMaker = Callable[..., Any]


@pytest.fixture
async def make_client(database_url: str) -> AsyncIterator[Callable[..., Any]]:
    """Build apps with given settings and clients on them; tables emptied afterwards."""
    made: list[tuple[Any, httpx.AsyncClient]] = []

    async def build(**overrides: Any) -> tuple[Any, httpx.AsyncClient]:
        settings = {"rate_limit_anonymous_per_minute": 1000, **overrides}
        application = create_app(make_settings(database_url, **settings))
        http = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=application, raise_app_exceptions=False),
            base_url="http://testserver",
        )
        made.append((application, http))
        return application, http

    yield build
    for application, http in made:
        await http.aclose()
        if application.state.redis is not None:
            await application.state.redis.aclose()
    await truncate_all(made[0][0])
    for application, _http in made:
        await application.state.engine.dispose()


@pytest.fixture
def redis_db14() -> Iterator[str]:
    """This suite's Redis database, emptied before and after."""
    require_service(TEST_REDIS_DB_URL, 6379, "Redis")
    client = redis.Redis.from_url(TEST_REDIS_DB_URL)
    client.flushdb()
    yield TEST_REDIS_DB_URL
    client.flushdb()
    client.close()


async def test_org_limit_headers_and_429(make_client: Callable[..., Any]) -> None:
    _app, http = await make_client(rate_limit_per_minute=5)
    actor = await sign_up(http, "limits@example.com")
    org_id = await create_org(actor, "limits")
    remaining = []
    for _ in range(5):
        response = await http.get("/api/v1/jobs", headers=actor.in_org(org_id))
        assert response.status_code == 200
        assert response.headers["x-ratelimit-limit"] == "5"
        assert 0 < int(response.headers["x-ratelimit-reset"]) <= 60
        remaining.append(int(response.headers["x-ratelimit-remaining"]))
    assert remaining == [4, 3, 2, 1, 0]
    refused = await http.get("/api/v1/jobs", headers=actor.in_org(org_id))
    assert refused.status_code == 429
    assert refused.headers["content-type"] == "application/problem+json"
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert refused.json()["limit"] == "org" and refused.headers["x-ratelimit-remaining"] == "0"
    # Another org of the same user has its own budget.
    other_org = await create_org(actor, "limits-two")
    assert (await http.get("/api/v1/jobs", headers=actor.in_org(other_org))).status_code == 200


async def test_credential_limit(make_client: Callable[..., Any]) -> None:
    _app, http = await make_client(rate_limit_principal_per_minute=3)
    actor = await sign_up(http, "principal@example.com")
    org_id = await create_org(actor, "principal-org")  # the user's own requests count too
    statuses = [(await http.get("/api/v1/jobs", headers=actor.in_org(org_id))).status_code for _ in range(3)]
    assert statuses[-1] == 429
    assert (await http.get("/api/v1/jobs", headers=actor.in_org(org_id))).json()["limit"] == "principal"


async def test_anonymous_limit_per_ip_and_trusted_proxies(make_client: Callable[..., Any]) -> None:
    _app, http = await make_client(rate_limit_anonymous_per_minute=3)
    spoof = {"X-Forwarded-For": "198.51.100.7"}
    codes = [(await http.get("/api/v1", headers=spoof)).status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]  # an untrusted peer cannot pick its address
    assert (await http.get("/health")).status_code == 200  # probes outside /api are not limited

    _app2, proxied = await make_client(rate_limit_anonymous_per_minute=3, trusted_proxies=["127.0.0.1"])
    for address in ("198.51.100.7", "198.51.100.8"):
        codes = [
            (await proxied.get("/api/v1", headers={"X-Forwarded-For": address})).status_code for _ in range(4)
        ]
        assert codes == [200, 200, 200, 429], address


async def test_refusals_carry_the_limit_that_applied(make_client: Callable[..., Any]) -> None:
    _app, http = await make_client(rate_limit_anonymous_per_minute=4, rate_limit_principal_per_minute=50)
    actor = await sign_up(http, "refused@example.com")  # two anonymous requests (register, sign in)
    # A signed-in caller refused before any org limit (not a member): its credential's budget.
    stranger = await http.get("/api/v1/jobs", headers=actor.in_org(str(uuid.uuid4())))
    assert stranger.status_code == 404
    assert stranger.headers["x-ratelimit-limit"] == "50"
    assert stranger.headers["x-ratelimit-remaining"] == "49"
    # Anonymous refusals (no or bad credentials, unknown path) count against the address's budget.
    seen = []
    for response in (
        await http.get("/api/v1/jobs"),
        await http.get("/api/v1/jobs", headers={"Authorization": "Bearer not-a-token"}),
    ):
        assert response.status_code == 401
        assert response.headers["content-type"] == "application/problem+json"
        assert response.headers["x-ratelimit-limit"] == "4"
        assert 0 < int(response.headers["x-ratelimit-reset"]) <= 60
        seen.append(response.headers["x-ratelimit-remaining"])
    assert seen == ["1", "0"]
    for refused in (await http.get("/api/v1/jobs"), await http.get("/api/v1/no-such-thing")):
        assert refused.status_code == 429
        assert refused.json()["limit"] == "ip" and refused.json()["status"] == 429
        assert 1 <= int(refused.headers["retry-after"]) <= 60
        assert refused.headers["x-ratelimit-remaining"] == "0" and refused.headers["x-request-id"]
    assert (await http.get("/health")).status_code == 200  # outside /api: not limited


async def test_monthly_quota_counts_flushes_and_refuses(make_client: Callable[..., Any]) -> None:
    application, http = await make_client()
    actor = await sign_up(http, "quota@example.com")
    org_id = await create_org(actor, "quota")
    org = uuid.UUID(org_id)

    async def three_per_month(asked: uuid.UUID) -> OrgLimits:
        return OrgLimits(requests_per_minute=None, requests_per_month=3)

    application.state.org_limits = three_per_month
    codes = [(await http.get("/api/v1/jobs", headers=actor.in_org(org_id))).status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    refused = await http.get("/api/v1/jobs", headers=actor.in_org(org_id))
    assert refused.json()["limit"] == "month"
    assert abs(int(refused.headers["retry-after"]) - seconds_to_next_month(datetime.now(UTC))) <= 2
    assert await requests_this_month(application, org) == 5

    await execute_system(
        application.state.session_factory, application.state.settings, FLUSH_TASK,
        meter=application.state.usage_meter,
    )  # fmt: skip
    async with application.state.session_factory() as session:
        assert await requests_this_month(session, org) == 5


async def test_redis_limits_are_shared_by_processes(make_client: Callable[..., Any], redis_db14: str) -> None:
    # A generous socket timeout: on a loaded machine a slow reply would fail open and count nothing.
    first, http_a = await make_client(rate_limit_per_minute=4, redis_url=redis_db14, redis_timeout_ms=2000)
    second, http_b = await make_client(rate_limit_per_minute=4, redis_url=redis_db14, redis_timeout_ms=2000)
    actor = await sign_up(http_a, "shared@example.com")
    org_id = await create_org(actor, "shared")
    codes = []
    for i in range(6):
        client = http_a if i % 2 == 0 else http_b
        codes.append((await client.get("/api/v1/jobs", headers=actor.in_org(org_id))).status_code)
    assert codes == [200, 200, 200, 200, 429, 429]
    # Served requests count towards the month (refused ones do not); each process pushes its counts
    # to Redis about once a second, or when asked.
    await second.state.usage_meter.push()
    assert await requests_this_month(first, uuid.UUID(org_id)) == 4


async def test_unreachable_redis_fails_open_within_the_timeout(make_client: Callable[..., Any]) -> None:
    # Port 9 (discard) on loopback refuses connections: the storage is "down".
    _app, http = await make_client(
        rate_limit_per_minute=2, redis_url="redis://127.0.0.1:9/0", redis_timeout_ms=100
    )
    actor = await sign_up(http, "failopen@example.com")
    org_id = await create_org(actor, "failopen")
    before = LIMITER_UNAVAILABLE._value.get()
    started = time.perf_counter()
    codes = [(await http.get("/api/v1/jobs", headers=actor.in_org(org_id))).status_code for _ in range(5)]
    elapsed = time.perf_counter() - started
    assert codes == [200] * 5  # over the limit of 2, but the limiter cannot count: requests are served
    assert elapsed < 5 * 0.5
    assert LIMITER_UNAVAILABLE._value.get() > before


async def test_redis_windows_count_both_limits_in_one_round_trip(
    make_client: Callable[..., Any], redis_db14: str
) -> None:
    """With Redis, the org's and the credential's windows are checked by one script: the same headers
    and refusals as with the library's limiter, the counts shared in Redis."""
    application, http = await make_client(
        rate_limit_per_minute=5,
        rate_limit_principal_per_minute=50,
        redis_url=redis_db14,
        redis_timeout_ms=2000,
    )
    assert application.state.request_limits.limiter.__class__.__name__ == "RedisWindowLimiter"
    actor = await sign_up(http, "windows@example.com")
    org_id = await create_org(actor, "windows")
    seen = []
    for _ in range(5):
        response = await http.get("/api/v1/jobs", headers=actor.in_org(org_id))
        assert response.status_code == 200
        assert response.headers["x-ratelimit-limit"] == "5"
        assert 0 < int(response.headers["x-ratelimit-reset"]) <= 60
        seen.append(int(response.headers["x-ratelimit-remaining"]))
    assert seen == [4, 3, 2, 1, 0]
    refused = await http.get("/api/v1/jobs", headers=actor.in_org(org_id))
    assert refused.status_code == 429 and refused.json()["limit"] == "org"
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    client = redis.Redis.from_url(redis_db14)
    try:
        keys = client.keys("rf:rl:*")
        assert any(b"org" in k for k in keys) and any(b"principal" in k for k in keys)
    finally:
        client.close()

    # The credential's own limit, checked in the same round trip, refuses on its own.
    _app, strict = await make_client(
        rate_limit_per_minute=100,
        rate_limit_principal_per_minute=4,
        redis_url=redis_db14,
        redis_timeout_ms=2000,
    )
    other = await sign_up(strict, "windows-two@example.com")
    other_org = await create_org(other, "windows-two")
    codes = [
        (await strict.get("/api/v1/jobs", headers=other.in_org(other_org))).status_code for _ in range(4)
    ]
    assert 200 in codes and codes[-1] == 429
    last = await strict.get("/api/v1/jobs", headers=other.in_org(other_org))
    assert last.json()["limit"] == "principal" and last.headers["x-ratelimit-remaining"] == "0"


async def _window_counts(url: str, pattern: str) -> dict[bytes, int]:
    client = redis.Redis.from_url(url)
    try:
        return {key: int(client.get(key) or 0) for key in client.keys(pattern)}
    finally:
        client.close()


async def test_keys_far_from_their_limit_are_counted_in_process_and_synced(redis_db14: str) -> None:
    """With a sync interval, a key's first hit of a window is checked in Redis, the next ones are
    counted in the process (exact remaining counts for that process) until `sync` adds them in Redis."""
    client = AsyncRedis.from_url(redis_db14)
    limiter = RedisWindowLimiter(client, sync_s=3600)  # no background sync during the test
    item = RateLimitItemPerMinute(1000)
    try:
        remaining = [(await limiter.hit(item, "org", "synced")).remaining for _ in range(10)]
        assert remaining == list(range(999, 989, -1))
        assert list((await _window_counts(redis_db14, "rf:rl:*synced*")).values()) == [1]  # the first hit
        await limiter.sync()
        assert list((await _window_counts(redis_db14, "rf:rl:*synced*")).values()) == [10]
        # Nothing is counted twice: the next sync has nothing to add.
        assert (await limiter.hit(item, "org", "synced")).remaining == 989
        await limiter.sync()
        await limiter.sync()
        assert list((await _window_counts(redis_db14, "rf:rl:*synced*")).values()) == [11]
    finally:
        await client.aclose()


async def test_processes_counting_locally_still_stop_at_the_limit(redis_db14: str) -> None:
    """Two processes alternating on one key: far from the limit each counts on its own (and asks Redis
    every hundredth of the limit), near it every hit is checked in Redis — exactly the limit is admitted."""
    clients = [AsyncRedis.from_url(redis_db14) for _ in range(2)]
    limiters = [RedisWindowLimiter(c, sync_s=3600) for c in clients]
    item = RateLimitItemPerMinute(200)
    try:
        allowed = 0
        for i in range(260):
            state = await limiters[i % 2].hit(item, "org", "two-processes")
            allowed += state.allowed
            assert state.remaining >= 0
        assert allowed == 200
        for limiter in limiters:
            await limiter.sync()
        assert list((await _window_counts(redis_db14, "rf:rl:*two-processes*")).values()) == [200]
    finally:
        for c in clients:
            await c.aclose()


async def test_hits_counted_locally_go_to_their_own_window(
    redis_db14: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Hits counted in the process just before a window ends are added to that window (now the previous
    one, weighted by the sliding window), not to the new one."""
    client = AsyncRedis.from_url(redis_db14)
    limiter = RedisWindowLimiter(client, sync_s=3600)
    item = RateLimitItemPerMinute(1000)
    start = (int(time.time()) // 60 + 1) * 60  # the start of a minute, in the future: no one else's keys
    clock = {"now": start + 50.0}
    monkeypatch.setattr("raptorflow.kit.ratelimit.time.time", lambda: clock["now"])
    try:
        for _ in range(10):
            await limiter.hit(item, "org", "rollover")
        clock["now"] = start + 60 + 1.0  # one second into the next window
        state = await limiter.hit(item, "org", "rollover")
        # previous window: 10 hits weighted by 59/60 -> 9; current: this one.
        assert state.remaining == 1000 - 9 - 1
        counts = await _window_counts(redis_db14, "rf:rl:*rollover*")
        assert sorted(counts.values()) == [1, 10]
    finally:
        await client.aclose()


async def test_sync_interval_setting(make_client: Callable[..., Any], redis_db14: str) -> None:
    exact, _http = await make_client(redis_url=redis_db14, rate_limit_sync_ms=0)
    synced, _http2 = await make_client(redis_url=redis_db14)
    assert exact.state.request_limits.limiter.sync_s == 0
    assert synced.state.request_limits.limiter.sync_s == 0.1


async def test_flush_skips_orgs_that_no_longer_exist(
    make_client: Callable[..., Any], redis_db14: str
) -> None:
    """A purged org's count stays in Redis until the month's keys expire; the flush writes every other
    org's count instead of failing on it (one foreign-key error aborted the whole flush)."""
    application, http = await make_client(redis_url=redis_db14, redis_timeout_ms=2000)
    actor = await sign_up(http, "flush-gone@example.com")
    org_id = await create_org(actor, "flush-gone")
    for _ in range(3):
        assert (await http.get("/api/v1/jobs", headers=actor.in_org(org_id))).status_code == 200
    await application.state.usage_meter.push()
    month = month_of(datetime.now(UTC))
    gone = uuid.uuid4()
    client = redis.Redis.from_url(redis_db14)
    try:
        client.sadd(USAGE_ORGS_KEY.format(month=month), str(gone))
        client.set(USAGE_KEY.format(month=month, org=gone), 42)
    finally:
        client.close()
    result = await execute_system(
        application.state.session_factory, application.state.settings, FLUSH_TASK,
        meter=application.state.usage_meter,
    )  # fmt: skip
    assert result == {"flushed": 1}
    async with application.state.session_factory() as session:
        assert await requests_this_month(session, uuid.UUID(org_id)) == 3
