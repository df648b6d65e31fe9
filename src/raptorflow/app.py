"""create_app(settings): the ASGI application with its middleware, routers and error rendering."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from raptorflow import __version__
from raptorflow.config import Settings, settings_from_env
from raptorflow.kit.cache import create_redis
from raptorflow.kit.db import create_engine, session_factory
from raptorflow.kit.logging import configure_logging
from raptorflow.kit.middleware import RequestContextMiddleware
from raptorflow.kit.web import ORJSONResponse, install_problem_handlers
from raptorflow.system.endpoints import router as system_router


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    try:
        yield
    finally:
        await app.state.engine.dispose()
        if app.state.redis is not None:
            await app.state.redis.aclose()


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the application; nothing connects until the first request."""
    settings = settings or settings_from_env()
    configure_logging(fmt=settings.effective_log_format.value, level=settings.log_level)
    app = FastAPI(
        title="RaptorFlow",
        version=__version__,
        summary="Multi-tenant threat-intelligence platform",
        default_response_class=ORJSONResponse,
        openapi_url="/openapi.json",
        docs_url="/docs",
        redoc_url=None,
        lifespan=_lifespan,
    )
    app.state.settings = settings
    app.state.engine = create_engine(settings.database_url, pool_size=settings.db_pool_size)
    app.state.session_factory = session_factory(app.state.engine)
    app.state.redis = (
        create_redis(settings.redis_url, timeout_ms=settings.redis_timeout_ms) if settings.redis_url else None
    )
    install_problem_handlers(app)
    app.add_middleware(RequestContextMiddleware)
    app.include_router(system_router)
    return app


def app_from_env() -> FastAPI:
    """Factory used by `raptorflow serve` workers."""
    return create_app(settings_from_env())
