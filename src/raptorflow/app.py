"""create_app(settings): the ASGI application with its middleware, routers and error rendering."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from raptorflow import __version__
from raptorflow.accounts import endpoints as accounts_endpoints
from raptorflow.audit import endpoints as audit_endpoints
from raptorflow.auth import endpoints as auth_endpoints
from raptorflow.auth import passwords
from raptorflow.auth.deps import ORG_HEADER
from raptorflow.auth.keycache import ApiKeyCache
from raptorflow.auth.oidc import ExternalTokenVerifier
from raptorflow.auth.tokens import TokenIssuer
from raptorflow.billing import endpoints as billing_endpoints
from raptorflow.billing import service as billing_service
from raptorflow.billing.mode import BillingConfig, attach_billing
from raptorflow.config import Settings, settings_from_env
from raptorflow.console.router import include_console
from raptorflow.intel.actors import endpoints as actor_endpoints
from raptorflow.intel.attack import endpoints as attack_endpoints
from raptorflow.intel.campaigns import endpoints as campaign_endpoints
from raptorflow.intel.indicators import endpoints as indicator_endpoints
from raptorflow.intel.lookup import endpoints as lookup_endpoints
from raptorflow.intel.lookup.fastpath import LookupFastPath
from raptorflow.intel.projects import endpoints as project_endpoints
from raptorflow.intel.relationships import endpoints as relationship_endpoints
from raptorflow.intel.reports import endpoints as report_endpoints
from raptorflow.intel.sightings import endpoints as sighting_endpoints
from raptorflow.intel.vulnerabilities import endpoints as vulnerability_endpoints
from raptorflow.jobs import endpoints as job_endpoints
from raptorflow.jobs.runtime import build_dispatcher, start_background, stop_background
from raptorflow.jobs.usage import install_platform
from raptorflow.kit.cache import create_redis
from raptorflow.kit.db import DirectPool, create_engine, session_factory
from raptorflow.kit.faults import install_fault_handlers
from raptorflow.kit.logging import configure_logging, get_logger
from raptorflow.kit.middleware import allow_body_size, install_http_middleware
from raptorflow.kit.ratelimit import Limiter, make_storage
from raptorflow.kit.web import ORJSONResponse, document_problems, install_problem_handlers, prefilter_routers
from raptorflow.sharing.exports import endpoints as export_endpoints
from raptorflow.sharing.extraction import endpoints as extraction_endpoints
from raptorflow.sharing.feeds import endpoints as feed_endpoints
from raptorflow.sharing.imports import endpoints as import_endpoints
from raptorflow.sharing.stix import endpoints as stix_endpoints
from raptorflow.sharing.taxii import endpoints as taxii_endpoints
from raptorflow.sharing.taxii import schemas as taxii_schemas
from raptorflow.system.docs import router as docs_router
from raptorflow.system.endpoints import router as system_router
from raptorflow.webhooks import endpoints as webhook_endpoints


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    try:
        await app.state.token_issuer.ensure_key()
    except Exception as exc:  # the database may still be starting; the first sign-in creates the key
        get_logger("raptorflow").warning("startup.signing_key_unavailable", error=type(exc).__name__)
    await start_background(app.state)
    if getattr(app.state, "freeze_gc", False):
        # A server worker: everything built so far (modules, routes, models, pools) lives as long as
        # the process. Frozen, it is no longer traversed by the collector's full passes, which
        # otherwise took ~120 ms each over ~250,000 objects and ran during large requests.
        gc.collect()
        gc.freeze()
    try:
        yield
    finally:
        await stop_background(app.state)
        await app.state.engine.dispose()
        if app.state.direct_pool is not None:
            await app.state.direct_pool.close()
        if app.state.redis is not None:
            await app.state.redis.aclose()


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the application; nothing connects until the first request."""
    settings = settings or settings_from_env()
    configure_logging(fmt=settings.effective_log_format.value, level=settings.log_level)
    passwords.configure(time_cost=settings.argon2_time_cost, memory_kib=settings.argon2_memory_kib)
    app = FastAPI(
        title="RaptorFlow",
        version=__version__,
        summary="Multi-tenant threat-intelligence platform",
        default_response_class=ORJSONResponse,
        openapi_url="/openapi.json",
        docs_url=None,  # served by raptorflow.system.docs from this process (no CDN)
        redoc_url=None,
        lifespan=_lifespan,
    )
    app.state.settings = settings
    app.state.engine = create_engine(
        settings.database_url,
        pool_size=settings.db_pool_size,
        role=None if settings.is_sqlite else (settings.database_app_role or None),
    )
    app.state.direct_pool = (
        None
        if settings.is_sqlite
        else DirectPool(
            settings.database_url,
            role=settings.database_app_role or None,
            max_size=settings.db_pool_size,
        )
    )
    app.state.session_factory = session_factory(app.state.engine, direct_pool=app.state.direct_pool)
    app.state.jobs = build_dispatcher(app.state.session_factory, settings)
    app.state.billing = BillingConfig.from_settings(settings)
    attach_billing(app.state.session_factory, app.state.billing)
    app.state.redis = (
        create_redis(settings.redis_url, timeout_ms=settings.redis_timeout_ms) if settings.redis_url else None
    )
    app.state.api_key_cache = ApiKeyCache(app.state.redis)
    app.state.limiter = Limiter(make_storage(settings.redis_url, timeout_ms=settings.redis_timeout_ms))
    install_platform(app)
    if settings.billing_enabled:
        app.state.org_limits = billing_service.org_limits_hook(app.state.session_factory)  # plan limits
    app.state.token_issuer = TokenIssuer(
        app.state.session_factory,
        issuer=settings.public_url.rstrip("/"),
        audience="raptorflow",
        ttl_s=settings.access_token_ttl_s,
        secret_key=settings.secret_key,
    )
    app.state.external_verifier = (
        ExternalTokenVerifier(
            jwks_url=settings.oidc_jwks_url,
            issuer=settings.oidc_issuer,
            audience=settings.oidc_audience,
            hs256_secret=settings.oidc_hs256_secret,
        )
        if settings.oidc_issuer and (settings.oidc_jwks_url or settings.oidc_hs256_secret)
        else None
    )
    install_problem_handlers(app)
    install_fault_handlers(app)
    # Innermost (added first): inside every other middleware, before FastAPI's routing.
    app.add_middleware(LookupFastPath, state=app.state)
    install_http_middleware(app, settings)
    app.include_router(system_router)
    app.include_router(docs_router)
    app.include_router(auth_endpoints.router)
    app.include_router(auth_endpoints.wellknown)
    app.include_router(accounts_endpoints.users)
    app.include_router(accounts_endpoints.invites)
    app.include_router(accounts_endpoints.context)
    app.include_router(accounts_endpoints.orgs)
    app.include_router(audit_endpoints.router)
    app.include_router(attack_endpoints.router)
    app.include_router(actor_endpoints.router)
    app.include_router(campaign_endpoints.router)
    app.include_router(vulnerability_endpoints.router)
    app.include_router(report_endpoints.router)
    app.include_router(indicator_endpoints.router)
    app.include_router(lookup_endpoints.router)
    app.include_router(project_endpoints.router)
    app.include_router(relationship_endpoints.router)
    app.include_router(relationship_endpoints.graph)
    app.include_router(sighting_endpoints.router)
    app.include_router(extraction_endpoints.router)
    app.include_router(export_endpoints.router)
    app.include_router(stix_endpoints.router)
    app.include_router(taxii_endpoints.collections)
    app.include_router(taxii_endpoints.server)
    app.include_router(import_endpoints.router)
    app.include_router(feed_endpoints.router)
    allow_body_size(app, "/api/v1/imports", import_endpoints.MAX_BODY)
    allow_body_size(app, "/api/v1/extract", extraction_endpoints.MAX_BODY)
    app.include_router(job_endpoints.router)
    app.include_router(webhook_endpoints.router)
    app.include_router(billing_endpoints.router if settings.billing_enabled else billing_endpoints.disabled)
    # The web console after the API: its catch-all org pages never shadow an API path.
    include_console(app)
    # Last, once every router is in: a per-router path prefix check before FastAPI's regex walk.
    prefilter_routers(app)
    document_problems(
        app,
        other_formats={
            "/taxii2": (taxii_endpoints.TAXII_MEDIA_TYPE, "TaxiiError", taxii_schemas.ERROR_SCHEMA)
        },
        org_header=ORG_HEADER,
    )
    return app


def app_from_env() -> FastAPI:
    """Factory used by `raptorflow serve` workers (the collector skips what startup built)."""
    app = create_app(settings_from_env())
    app.state.freeze_gc = True
    return app
