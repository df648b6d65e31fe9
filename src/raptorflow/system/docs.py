"""The API's documentation browser (/docs): Swagger UI served from this process, never from a CDN.

The Swagger UI files come from the `fastapi-offline` package, which ships them; our page and its
start-up script are ours, so the page needs no inline script and no third-party origin.
"""

from __future__ import annotations

import hashlib
from html import escape
from pathlib import Path

import fastapi_offline
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from raptorflow.auth.deps import PublicRoute
from raptorflow.kit.errors import NotFound

DOCS_PATH = "/docs"
ASSETS_PATH = "/docs/assets"
# Swagger UI sets style attributes from script, hence 'unsafe-inline' for styles only; scripts stay 'self'.
DOCS_CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; script-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
_VENDOR = Path(fastapi_offline.__file__).parent / "static"
_OURS = Path(__file__).parent / "static"
_SOURCES = {
    "swagger-ui-bundle.js": (_VENDOR / "swagger-ui-bundle.js", "text/javascript; charset=utf-8"),
    "swagger-ui.css": (_VENDOR / "swagger-ui.css", "text/css; charset=utf-8"),
    "favicon.png": (_VENDOR / "favicon.png", "image/png"),
    "docs-init.js": (_OURS / "docs-init.js", "text/javascript; charset=utf-8"),
}
_cache: dict[str, tuple[bytes, str, str]] = {}

router = APIRouter(include_in_schema=False, dependencies=[PublicRoute])


def _asset(name: str) -> tuple[bytes, str, str] | None:
    """An asset's body, media type and ETag, read once per process (the bundle is 1.5 MB)."""
    if name not in _cache:
        source = _SOURCES.get(name)
        if source is None:
            return None
        body = source[0].read_bytes()
        _cache[name] = (body, source[1], '"' + hashlib.sha256(body).hexdigest()[:16] + '"')
    return _cache[name]


@router.get(DOCS_PATH)
async def docs_page(request: Request) -> HTMLResponse:
    """Swagger UI over this server's OpenAPI document."""
    root = escape(request.scope.get("root_path", ""), quote=True)
    openapi_url = escape(request.app.openapi_url or "/openapi.json", quote=True)
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(request.app.title)} API — docs</title>
<link rel="icon" type="image/png" href="{root}{ASSETS_PATH}/favicon.png">
<link rel="stylesheet" href="{root}{ASSETS_PATH}/swagger-ui.css">
</head><body>
<div id="swagger-ui" data-openapi-url="{root}{openapi_url}"></div>
<script src="{root}{ASSETS_PATH}/swagger-ui-bundle.js"></script>
<script src="{root}{ASSETS_PATH}/docs-init.js"></script>
</body></html>
"""
    return HTMLResponse(page, headers={"Content-Security-Policy": DOCS_CSP})


@router.get(ASSETS_PATH + "/{name}")
async def docs_asset(name: str, request: Request) -> Response:
    """A file of the documentation page (Swagger UI's bundle and stylesheet, our start-up script)."""
    found = _asset(name)
    if found is None:
        raise NotFound()
    body, media_type, etag = found
    headers = {"ETag": etag, "Cache-Control": "public, max-age=86400"}
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    return Response(body, media_type=media_type, headers=headers)
