"""Prometheus metrics: the instruments every part updates, and the exposition endpoint's rendering.

Instruments live in one private registry (not prometheus-client's global one) so several apps in one
process (tests) and library defaults do not collide. Counters are per process, as with any Prometheus
client: scrape every API process (and worker) or aggregate at the scraper.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Request, Response
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from raptorflow.kit.crypto import same
from raptorflow.kit.errors import NotFound, ServiceUnavailable, Unauthorized

REGISTRY = CollectorRegistry(auto_describe=True)
CONTENT_TYPE = CONTENT_TYPE_LATEST

REQUESTS = Counter(
    "raptorflow_http_requests_total", "HTTP requests by route template and status.",
    ["method", "route", "status"], registry=REGISTRY,
)  # fmt: skip
LATENCY = Histogram(
    "raptorflow_http_request_duration_seconds", "HTTP request latency by route template.",
    ["method", "route"], registry=REGISTRY,
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)  # fmt: skip
RATE_LIMITED = Counter(
    "raptorflow_rate_limit_rejections_total", "Requests refused with 429, by limit kind.", ["kind"],
    registry=REGISTRY,
)  # fmt: skip
LIMITER_UNAVAILABLE = Counter(
    "raptorflow_rate_limit_storage_errors_total",
    "Rate-limit checks that failed open because the storage (Redis) was unreachable.", registry=REGISTRY,
)  # fmt: skip
JOBS = Counter(
    "raptorflow_jobs_total", "Job attempts by task and outcome (succeeded, failed, retried, cancelled).",
    ["kind", "outcome"], registry=REGISTRY,
)  # fmt: skip
WEBHOOKS = Counter(
    "raptorflow_webhook_deliveries_total", "Webhook delivery attempts by outcome.", ["outcome"],
    registry=REGISTRY,
)  # fmt: skip
DB_POOL_IN_USE = Gauge("raptorflow_db_pool_in_use", "Database connections checked out.", registry=REGISTRY)
JOB_QUEUE_DEPTH = Gauge(
    "raptorflow_job_queue_depth", "Jobs queued or running, all orgs (read at scrape time).", ["status"],
    registry=REGISTRY,
)  # fmt: skip
INDICATORS = Gauge(
    "raptorflow_indicators", "Indicators per org (read at scrape time).", ["org_id"], registry=REGISTRY
)

# Gauges read from the database at scrape time; installed by the app (kit stays domain-free).
ScrapeHook = Callable[[], Awaitable[None]]


async def render(hooks: list[ScrapeHook]) -> bytes:
    """Refresh scrape-time gauges, then the text exposition of every instrument."""
    for hook in hooks:
        await hook()
    return generate_latest(REGISTRY)


def metrics_router(public_dependency: Any) -> APIRouter:
    """GET /metrics: 404 unless enabled; then `Authorization: Bearer <metrics token>` is required."""
    router = APIRouter(include_in_schema=False, dependencies=[public_dependency])

    @router.get("/metrics")
    async def metrics(request: Request) -> Response:
        settings = request.app.state.settings
        if not settings.metrics_enabled:
            raise NotFound("No resource at this address.")
        if not settings.metrics_token:
            raise ServiceUnavailable("Metrics are enabled but RAPTORFLOW_METRICS_TOKEN is not set.")
        scheme, _, given = (request.headers.get("authorization") or "").partition(" ")
        if scheme.lower() != "bearer" or not same(given.strip(), settings.metrics_token):
            raise Unauthorized(
                "The metrics endpoint needs `Authorization: Bearer <RAPTORFLOW_METRICS_TOKEN>`."
            )
        body = await render(list(getattr(request.app.state, "metrics_hooks", [])))
        return Response(body, media_type=CONTENT_TYPE)

    return router
