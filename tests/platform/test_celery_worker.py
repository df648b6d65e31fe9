"""A real Celery worker (subprocess) on the real Redis broker runs a job enqueued through the API."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from raptorflow.app import create_app
from tests.conftest import create_org, make_settings, require_service, sign_up, truncate_all
from tests.platform.conftest import TEST_BROKER_URL, TEST_REDIS_DB_URL, Receiver

pytestmark = pytest.mark.redis
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def broker() -> Iterator[str]:
    """Redis database 13, emptied before and after (it is this suite's own)."""
    require_service(TEST_BROKER_URL, 6379, "Redis")
    client = redis.Redis.from_url(TEST_BROKER_URL)
    client.flushdb()
    yield TEST_BROKER_URL
    client.flushdb()
    client.close()


@pytest.fixture
def worker(database_url: str, broker: str, tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """`raptorflow worker --concurrency 1` against the test database and broker (PostgreSQL leg only:
    a broker is a production setting, and production runs on PostgreSQL)."""
    if not database_url.startswith("postgresql"):
        pytest.skip("the Celery worker runs in the PostgreSQL leg")
    env = {
        **os.environ,
        "RAPTORFLOW_DATABASE_URL": database_url,
        "RAPTORFLOW_BROKER_URL": broker,
        "RAPTORFLOW_OUTBOUND_ALLOW_PRIVATE": "true",
        "RAPTORFLOW_LOG_FORMAT": "json",
        "RAPTORFLOW_REDIS_URL": "",
    }
    log = (tmp_path / "worker.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "raptorflow", "worker", "--concurrency", "1", "--loglevel", "INFO"],
        env=env, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    yield proc
    # The test is over: stop the worker and its pool processes at once (its own process group).
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=15)
    log.close()


@pytest.fixture
async def celery_client(database_url: str, broker: str) -> AsyncIterator[tuple[httpx.AsyncClient, Any]]:
    """An API whose jobs go to the broker instead of running in-process."""
    application = create_app(make_settings(database_url, broker_url=broker, outbound_allow_private=True))
    transport = httpx.ASGITransport(app=application, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http, application
    await truncate_all(application)
    await application.state.engine.dispose()


async def test_job_runs_on_a_celery_worker(
    celery_client: tuple[httpx.AsyncClient, Any],
    worker: subprocess.Popen[bytes],
    receiver: Receiver,
    tmp_path: Path,
) -> None:
    http, _application = celery_client
    actor = await sign_up(http, f"celery-{uuid.uuid4().hex[:6]}@example.com")
    org_id = await create_org(actor, f"celery-{uuid.uuid4().hex[:6]}")
    hook = await http.post(
        "/api/v1/webhooks",
        json={"url": receiver.url, "events": ["feed.failed"]},
        headers=actor.in_org(org_id),
    )
    queued = await http.post(f"/api/v1/webhooks/{hook.json()['id']}/test", headers=actor.in_org(org_id))
    assert queued.status_code == 202
    job_url = f"/api/v1/jobs/{queued.json()['job_id']}"
    body: dict[str, Any] = {}
    for _ in range(300):  # the worker's first start (imports, fork) takes a few seconds
        body = (await http.get(job_url, headers=actor.in_org(org_id))).json()
        if body["status"] in ("succeeded", "failed"):
            break
        assert worker.poll() is None, (tmp_path / "worker.log").read_text()[-3000:]
        await asyncio.sleep(0.1)
    assert body["status"] == "succeeded", (body, (tmp_path / "worker.log").read_text()[-3000:])
    assert body["attempts"] == 1 and body["result"]["delivered"] == 1
    assert len(receiver.requests) == 1
    # The in-process runner did not run it: this app sends jobs to the broker only.
    assert not hasattr(_application.state.jobs, "drain")


def _serve(port: int, database_url: str, broker: str, log_path: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "RAPTORFLOW_DATABASE_URL": database_url,
        "RAPTORFLOW_REDIS_URL": TEST_REDIS_DB_URL,
        "RAPTORFLOW_BROKER_URL": broker,
        "RAPTORFLOW_RATE_LIMIT_PER_MINUTE": "10",
        "RAPTORFLOW_OUTBOUND_ALLOW_PRIVATE": "true",
        "RAPTORFLOW_ARGON2_TIME_COST": "1",
        "RAPTORFLOW_ARGON2_MEMORY_KIB": "1024",
        "RAPTORFLOW_LOG_FORMAT": "json",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "raptorflow", "serve", "--port", str(port)],
        env=env, cwd=log_path.parent, stdout=log_path.open("wb"), stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip


@pytest.fixture
def two_api_processes(database_url: str, broker: str, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """Two `raptorflow serve` processes on ports 18101/18102, sharing the database, Redis and broker."""
    if not database_url.startswith("postgresql"):
        pytest.skip("several processes are a production setting: PostgreSQL leg only")
    limits = redis.Redis.from_url(TEST_REDIS_DB_URL)
    limits.flushdb()
    procs = [_serve(port, database_url, broker, tmp_path / f"serve-{port}.log") for port in (18101, 18102)]
    urls = [f"http://127.0.0.1:{port}" for port in (18101, 18102)]
    try:
        deadline = time.monotonic() + 60
        for url, proc in zip(urls, procs, strict=True):
            while True:
                try:
                    if httpx.get(url + "/health", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert proc.poll() is None and time.monotonic() < deadline, tmp_path / "serve.log"
                time.sleep(0.2)
        yield urls[0], urls[1]
    finally:
        for proc in procs:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=15)
        limits.flushdb()
        limits.close()


async def test_two_api_processes_and_a_worker_share_limits_and_run_each_job_once(
    two_api_processes: tuple[str, str], worker: subprocess.Popen[bytes], receiver: Receiver, database_url: str
) -> None:
    first, second = two_api_processes
    async with httpx.AsyncClient(base_url=first) as a, httpx.AsyncClient(base_url=second) as b:
        actor = await sign_up(a, "two-procs@example.com")
        org_id = await create_org(actor, "two-procs")
        headers = actor.in_org(org_id)
        hook = await a.post(
            "/api/v1/webhooks", json={"url": receiver.url, "events": ["feed.failed"]}, headers=headers
        )
        assert hook.status_code == 201
        # The org may make 10 requests a minute, whichever process serves them (the webhook was one).
        codes = []
        for i in range(12):
            client = a if i % 2 else b
            queued = await client.post(f"/api/v1/webhooks/{hook.json()['id']}/test", headers=headers)
            codes.append(queued.status_code)
        assert codes.count(202) == 9 and codes.count(429) == 3, codes
    # Every queued delivery reached the receiver exactly once.
    engine = create_async_engine(database_url)
    try:
        for _ in range(300):
            async with engine.connect() as conn:
                rows = (await conn.execute(text("SELECT status, attempts FROM jobs"))).all()
            if len(rows) == 9 and all(s in ("succeeded", "failed") for s, _a in rows):
                break
            await asyncio.sleep(0.1)
    finally:
        await engine.dispose()
    assert sorted(rows) == [("succeeded", 1)] * 9
    assert len(receiver.requests) == 9
    assert len({h["x-raptorflow-delivery"] for h, _b in receiver.requests}) == 9
