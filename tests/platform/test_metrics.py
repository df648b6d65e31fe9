"""Prometheus /metrics: off by default, bearer-protected when on, with the platform's instruments."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from raptorflow.app import create_app
from tests.conftest import create_org, make_settings, sign_up, truncate_all


@pytest.fixture
async def metrics_client(database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """An app with metrics on, token `scrape-me`, a limit of 2 requests a minute per org."""
    application = create_app(
        make_settings(database_url, metrics_enabled=True, metrics_token="scrape-me", rate_limit_per_minute=2)
    )
    transport = httpx.ASGITransport(app=application, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http
    await truncate_all(application)
    await application.state.engine.dispose()


async def test_metrics_are_off_by_default(client: httpx.AsyncClient) -> None:
    assert (await client.get("/metrics", headers={"Authorization": "Bearer x"})).status_code == 404


async def test_metrics_need_the_token_and_count_requests(metrics_client: httpx.AsyncClient) -> None:
    assert (await metrics_client.get("/metrics")).status_code == 401
    assert (await metrics_client.get("/metrics", headers={"Authorization": "Bearer nope"})).status_code == 401
    actor = await sign_up(metrics_client, "metrics@example.com")
    org_id = await create_org(actor, "metrics")
    for _ in range(3):
        await metrics_client.get("/api/v1/jobs", headers=actor.in_org(org_id))
    scraped = await metrics_client.get("/metrics", headers={"Authorization": "Bearer scrape-me"})
    assert scraped.status_code == 200 and scraped.headers["content-type"].startswith("text/plain")
    text = scraped.text
    assert 'raptorflow_http_requests_total{method="GET",route="/api/v1/jobs",status="200"}' in text
    assert 'raptorflow_http_requests_total{method="GET",route="/api/v1/jobs",status="429"}' in text
    assert "raptorflow_http_request_duration_seconds_bucket" in text
    assert 'raptorflow_rate_limit_rejections_total{kind="org"}' in text
    assert 'raptorflow_job_queue_depth{status="queued"}' in text
    assert "raptorflow_db_pool_in_use" in text
    assert f'raptorflow_indicators{{org_id="{org_id}"}}' not in text  # no indicators yet: no series


def _value(text: str, prefix: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(prefix))


async def test_metrics_counters_grow(metrics_client: httpx.AsyncClient, app: Any) -> None:
    auth = {"Authorization": "Bearer scrape-me"}
    before = _value(
        (await metrics_client.get("/metrics", headers=auth)).text, "raptorflow_http_requests_total"
    )
    await metrics_client.get("/health")
    after = _value(
        (await metrics_client.get("/metrics", headers=auth)).text, "raptorflow_http_requests_total"
    )
    assert after >= before + 2  # /health and the first scrape itself
