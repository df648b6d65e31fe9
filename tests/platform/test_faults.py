"""Faults survived, against servers this test starts and stops itself (never the shared ones).

Redis stopped during requests: requests are served (fail open) and limiting resumes after restart.
PostgreSQL stopped: 503 problem while down; the same app (same pool) serves again once it is back,
and a write interrupted by the outage leaves no row behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from raptorflow.app import create_app
from raptorflow.kit import migrations
from tests.conftest import create_org, make_settings, sign_up, truncate_all

PG_BIN = Path("/usr/lib/postgresql/15/bin")


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, up: bool, timeout: float = 15.0) -> None:
    """Until something listens on `port` (or nothing does)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                if up:
                    return
        except OSError:
            if not up:
                return
        time.sleep(0.05)
    raise TimeoutError(f"port {port} did not become {'reachable' if up else 'closed'}")


class ThrowawayRedis:
    """redis-server on a free loopback port, no persistence."""

    def __init__(self) -> None:
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        wait_port(self.port, up=True)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None
        wait_port(self.port, up=False)


@pytest.fixture
def throwaway_redis() -> Iterator[ThrowawayRedis]:
    """A Redis server this test owns."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
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


class ThrowawayPostgres:
    """A PostgreSQL cluster in a temporary folder on a free port (initdb refuses root: run as postgres)."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="rf-pg-"))
        self.data = self.dir / "data"
        self.port = free_port()
        shutil.chown(self.dir, "postgres", "postgres")

    def _as_postgres(self, *args: str) -> None:
        subprocess.run(
            ["runuser", "-u", "postgres", "--", *args],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    def init(self) -> None:
        self._as_postgres(
            str(PG_BIN / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync"
        )

    def start(self) -> None:
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-o", options, "-w", "-l",
                          str(self.dir / "log"), "start")  # fmt: skip

    def stop(self) -> None:
        self._as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def remove(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def throwaway_postgres(database_url: str) -> Iterator[ThrowawayPostgres]:
    """A running throwaway cluster (only in the PostgreSQL leg of the suite)."""
    if not database_url.startswith("postgresql"):
        pytest.skip("the PostgreSQL fault runs in the PostgreSQL leg")
    if os.geteuid() != 0 or not (PG_BIN / "initdb").exists():
        pytest.skip("needs root (for runuser) and PostgreSQL 15 binaries")
    cluster = ThrowawayPostgres()
    cluster.init()
    cluster.start()
    yield cluster
    with contextlib.suppress(subprocess.CalledProcessError):  # already stopped
        cluster.stop()
    cluster.remove()


async def test_postgres_down_then_back(throwaway_postgres: ThrowawayPostgres) -> None:
    url = f"postgresql+asyncpg://postgres@127.0.0.1:{throwaway_postgres.port}/postgres"
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
