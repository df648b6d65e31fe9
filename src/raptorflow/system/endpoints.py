"""Liveness, readiness and the API index."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from raptorflow import __version__
from raptorflow.auth.deps import PublicRoute
from raptorflow.kit.db import ping
from raptorflow.kit.web import problem_response

router = APIRouter(tags=["system"], dependencies=[PublicRoute])


@router.get("/health", summary="Liveness: the process answers (touches nothing)")
async def health() -> dict[str, str]:
    """Liveness probe."""
    return {"status": "ok"}


async def _check(coro: Any, timeout: float) -> str:
    try:
        await asyncio.wait_for(coro, timeout)
    except TimeoutError:
        return "timeout"
    except Exception as exc:
        return f"error: {type(exc).__name__}"
    return "ok"


@router.get(
    "/ready",
    summary="Readiness: the database and (when configured) Redis answer",
    responses={503: {"description": "A dependency is down; the problem names it"}},
    response_model=None,
)
async def ready(request: Request) -> Response | dict[str, Any]:
    """Readiness probe: 503 naming what failed."""
    state = request.app.state
    checks = {"database": await _check(ping(state.engine), 5.0)}
    if state.redis is not None:
        checks["redis"] = await _check(state.redis.ping(), max(state.settings.redis_timeout_ms / 1000, 1.0))
    failed = [name for name, result in checks.items() if result != "ok"]
    if failed:
        return problem_response(
            request,
            503,
            "Not ready: " + ", ".join(f"{name} ({checks[name]})" for name in failed),
            extra={"checks": checks},
        )
    return {"status": "ready", "checks": checks}


@router.get("/api/v1", summary="API index: name, version and links")
async def api_index(request: Request) -> dict[str, Any]:
    """Entry point of the REST API."""
    base = str(request.base_url).rstrip("/")
    return {
        "name": "RaptorFlow",
        "version": __version__,
        "links": {
            "self": f"{base}/api/v1",
            "openapi": f"{base}/openapi.json",
            "docs": f"{base}/docs",
            "health": f"{base}/health",
            "ready": f"{base}/ready",
        },
    }
