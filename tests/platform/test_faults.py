"""Faults survived, against servers this test starts and stops itself (never the shared ones).

Without root or PostgreSQL's server programs (found with `pg_config --bindir`) these tests skip, and
fail when CI is set. tests/platform/test_serve_faults.py does the same against `raptorflow serve`.

Redis stopped during requests: requests are served (fail open) and limiting resumes after restart.
PostgreSQL stopped: 503 problem while down; the same app (same pool) serves again once it is back,
and a write interrupted by the outage leaves no row behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
import time
from collections.abc import Iterator

import httpx
import pytest

from raptorflow.app import create_app
from raptorflow.kit import migrations
from tests.conftest import create_org, make_settings, sign_up, truncate_all
from tests.platform.servers import ThrowawayPostgres, ThrowawayRedis, unavailable


@pytest.fixture
def throwaway_redis() -> Iterator[ThrowawayRedis]:
    """A Redis server this test owns."""
    if shutil.which("redis-server") is None:
        unavailable("redis-server is not installed")
    server = ThrowawayRedis()
    server.start()
    yield server
    server.stop()


async def _jobs(http: httpx.AsyncClient, headers: dict[str, str], n: int) -> list[int]:
    return [(await http.get("/api/v1/jobs", headers=headers)).status_code for _ in range(n)]


async def test_redis_stopped_during_requests(database_url: str, throwaway_redis: ThrowawayRedis) -> None:
    url = f"redis://127.0.0.1:{throwaway_redis.port}/0"
    application = create_app(make_settings(database_url, redis_url=url, rate_limit_per_minute=3))
    transport = httpx.ASGITransport(app=application, raise_app_exceptions=False)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            actor = await sign_up(http, "redis-fault@example.com")
            org_id = await create_org(actor, "redis-fault")
            headers = actor.in_org(org_id)
            assert await _jobs(http, headers, 4) == [200, 200, 200, 429]

            throwaway_redis.stop()
            started = time.perf_counter()
            assert await _jobs(http, headers, 5) == [200] * 5  # served, unlimited, while Redis is down
            assert time.perf_counter() - started < 3.0  # each within the 100 ms timeout, mostly at once

            throwaway_redis.start()  # empty: the restarted Redis lost its counters
            await asyncio.sleep(1.2)  # the limiter retries its storage after its 1 s breaker
            assert await _jobs(http, headers, 4) == [200, 200, 200, 429]
    finally:
        await truncate_all(application)
        await application.state.redis.aclose()
        await application.state.engine.dispose()


@pytest.fixture
def throwaway_postgres(database_url: str) -> Iterator[ThrowawayPostgres]:
    """A running throwaway cluster (only in the PostgreSQL leg of the suite)."""
    if not database_url.startswith("postgresql"):
        pytest.skip("the PostgreSQL fault runs in the PostgreSQL leg")
    cluster = ThrowawayPostgres.usable()
    cluster.init()
    cluster.start()
    yield cluster
    with contextlib.suppress(subprocess.CalledProcessError):  # already stopped
        cluster.stop()
    cluster.remove()


async def test_postgres_down_then_back(throwaway_postgres: ThrowawayPostgres) -> None:
    url = throwaway_postgres.url
    await asyncio.to_thread(migrations.upgrade, url)
    application = create_app(make_settings(url))
    transport = httpx.ASGITransport(app=application, raise_app_exceptions=False)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            actor = await sign_up(http, "pg-fault@example.com")
            org_id = await create_org(actor, "pg-fault")
            headers = actor.in_org(org_id)
            assert (await http.get("/api/v1/jobs", headers=headers)).status_code == 200

            throwaway_postgres.stop()
            down = await http.post("/api/v1/webhooks", headers=headers,
                                   json={"url": "https://hooks.invalid/x", "events": ["feed.failed"]})  # fmt: skip
            assert down.status_code == 503, down.text
            assert down.headers["content-type"] == "application/problem+json"
            assert down.json()["status"] == 503 and down.headers["retry-after"] == "5"

            throwaway_postgres.start()
            codes = [(await http.get("/api/v1/jobs", headers=headers)).status_code for _ in range(3)]
            # The pool was invalidated by the failure: at most one stale connection answers 503 again.
            assert codes[-1] == 200 and codes.count(503) <= 1, codes
            listed = await http.get("/api/v1/webhooks", headers=headers)
            assert listed.status_code == 200 and listed.json()["items"] == []  # nothing half-written
    finally:
        await application.state.engine.dispose()
