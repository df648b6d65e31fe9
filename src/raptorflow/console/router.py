"""The console's routers (mounted by create_app after the API) and its static files."""

from __future__ import annotations

import hashlib

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import Response

from raptorflow.auth.deps import PublicRoute
from raptorflow.console import (
    auth_pages,
    billing_pages,
    context_pages,
    intel_pages,
    settings_pages,
    sharing_pages,
    taxii_pages,
)
from raptorflow.console.stats_cache import StatsCache
from raptorflow.console.web import HERE
from raptorflow.kit.errors import NotFound

assets = APIRouter(prefix="/static", include_in_schema=False)
_TYPES = {
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
    ".ico": "image/x-icon",
}
# Hand-written files shipped in the package: read once per process, served with an ETag.
_FILES: dict[str, tuple[bytes, str, str]] = {}
for _path in sorted((HERE / "static").iterdir()):
    if _path.suffix in _TYPES:
        _body = _path.read_bytes()
        _FILES[_path.name] = (_body, _TYPES[_path.suffix], '"' + hashlib.sha256(_body).hexdigest()[:16] + '"')


def _serve(name: str, request: Request) -> Response:
    found = _FILES.get(name)
    if found is None:
        raise NotFound()
    body, media_type, etag = found
    headers = {"ETag": etag, "Cache-Control": "public, max-age=3600", "X-Content-Type-Options": "nosniff"}
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    return Response(body, media_type=media_type, headers=headers)


@assets.get("/{name}", dependencies=[PublicRoute])
async def static_file(name: str, request: Request) -> Response:
    """A console stylesheet, script or icon."""
    return _serve(name, request)


# Browsers ask for /favicon.ico on their own (feed readers and bookmarks too), whatever the page links.
favicon = APIRouter(include_in_schema=False)


@favicon.get("/favicon.ico", dependencies=[PublicRoute])
async def favicon_ico(request: Request) -> Response:
    """The site icon."""
    return _serve("favicon.ico", request)


def include_console(app: FastAPI) -> None:
    """Add the console after the API routes (org pages before the generic per-kind pages)."""
    app.state.console_stats = StatsCache(app.state.redis)
    app.include_router(assets)
    app.include_router(favicon)
    app.include_router(auth_pages.router)
    app.include_router(settings_pages.router)
    app.include_router(taxii_pages.router)
    app.include_router(billing_pages.router)
    app.include_router(intel_pages.router)
    app.include_router(sharing_pages.router)
    app.include_router(context_pages.router)


__all__ = ["include_console"]
