"""HTTP routes of STIX 2.1: export a selection as a bundle, import a bundle."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse

from raptorflow.auth.deps import require
from raptorflow.auth.permissions import Permission
from raptorflow.auth.principal import OrgContext
from raptorflow.kit.deps import SessionDep
from raptorflow.kit.errors import InvalidInput, UnknownReference
from raptorflow.kit.streaming import ClosingStreamingResponse
from raptorflow.kit.web import ORJSONResponse
from raptorflow.sharing.exports.schemas import export_filters
from raptorflow.sharing.stix.repository import StixRepository
from raptorflow.sharing.stix.schemas import BUNDLE_SCHEMA, ImportReportOut
from raptorflow.sharing.stix.service import (
    ImportDefaults,
    Selection,
    check_selection,
    import_bundle,
    stream_bundle,
)

router = APIRouter(prefix="/api/v1/stix", tags=["stix"])
Reader = Annotated[OrgContext, require(Permission.intel_read)]
Writer = Annotated[OrgContext, require(Permission.intel_write)]
MEDIA_TYPE = "application/stix+json;version=2.1"


@router.get(
    "/bundle",
    summary="Export a selection as a STIX 2.1 bundle",
    response_class=StreamingResponse,
    responses={200: {"content": {MEDIA_TYPE: {}}, "description": "A STIX 2.1 bundle, streamed"}},
)
async def get_bundle(
    request: Request,
    ctx: Reader,
    session: SessionDep,
    filters: Annotated[dict[str, Any], Depends(export_filters)],
    report_id: uuid.UUID | None = None,
    object_id: Annotated[
        uuid.UUID | None,
        Query(description="a threat actor or campaign (or any object) and its neighbourhood"),
    ] = None,
    depth: Annotated[int, Query(ge=1, le=2)] = 1,
    scope: Annotated[
        str, Query(pattern="^(indicators|project)$", description="`project`: everything in `project_id`")
    ] = "indicators",
) -> StreamingResponse:
    """Indicators matching the list filters (default), a project, a report, or an object's neighbourhood."""
    if report_id is not None:
        selection = Selection(report_id=report_id)
    elif object_id is not None:
        selection = Selection(object_id=object_id, depth=depth)
    elif scope == "project":
        if filters.get("project_id") is None:
            raise InvalidInput("project_id", "scope=project needs a project_id")
        selection = Selection(project_id=filters["project_id"])
    else:
        selection = Selection(indicators={k: v for k, v in filters.items() if v is not None})
    await check_selection(session, ctx.org_id, selection)
    return ClosingStreamingResponse(
        stream_bundle(request.app.state.session_factory, ctx.org_id, selection),
        media_type=MEDIA_TYPE,
        headers={"Content-Disposition": 'inline; filename="bundle.stix.json"', "Cache-Control": "no-store"},
    )


@router.post(
    "/bundles",
    summary="Import a STIX 2.1 bundle",
    response_model=ImportReportOut,
    openapi_extra={
        "requestBody": {"required": True, "content": {"application/json": {"schema": BUNDLE_SCHEMA}}}
    },
)
async def post_bundle(
    request: Request,
    ctx: Writer,
    session: SessionDep,
    project_id: uuid.UUID | None = None,
    tag: Annotated[list[str] | None, Query(max_length=20)] = None,
) -> ORJSONResponse:
    """Per-object results: created, updated, unchanged or rejected with the reason; the rest is imported."""
    raw = await request.body()
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput("body", f"not JSON: {exc}") from None
    if (
        not isinstance(data, dict)
        or data.get("type") != "bundle"
        or not isinstance(data.get("objects"), list)
    ):
        raise InvalidInput("body", 'expected a STIX bundle: {"type": "bundle", "objects": [...]}')
    if project_id is not None and not await StixRepository(session, ctx.org_id).project_exists(project_id):
        raise UnknownReference("project_id", "project")
    defaults = ImportDefaults(project_id=project_id, tags=list(tag or []), source="stix")
    report = await import_bundle(session, ctx.org_id, data["objects"], defaults=defaults, actor=ctx.principal)
    return ORJSONResponse(report.as_dict())
