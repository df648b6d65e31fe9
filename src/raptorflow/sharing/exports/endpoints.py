"""HTTP routes of exports: streamed files built from the indicator list filters."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse

from raptorflow.auth.deps import require
from raptorflow.auth.permissions import Permission
from raptorflow.auth.principal import OrgContext
from raptorflow.kit.db import utcnow
from raptorflow.kit.deps import SessionDep
from raptorflow.kit.streaming import ClosingStreamingResponse
from raptorflow.sharing.exports import service
from raptorflow.sharing.exports.schemas import blocklist_defaults, export_filters

router = APIRouter(prefix="/api/v1/exports", tags=["exports"])
Reader = Annotated[OrgContext, require(Permission.intel_read)]
Filters = Annotated[dict[str, Any], Depends(export_filters)]
STREAM: dict[int | str, dict[str, Any]] = {200: {"description": "The file, streamed"}}


def _stream(chunks: Any, media_type: str, filename: str) -> ClosingStreamingResponse:
    headers = {"Content-Disposition": f'attachment; filename="{filename}"', "Cache-Control": "no-store"}
    return ClosingStreamingResponse(chunks, media_type=media_type, headers=headers)


def _batches(request: Request, ctx: OrgContext, filters: dict[str, Any]) -> Any:
    return service.indicator_batches(request.app.state.session_factory, ctx.org_id, filters)


@router.get(
    "/indicators.csv", response_class=StreamingResponse, responses=STREAM, summary="Indicators as CSV"
)
async def export_csv(request: Request, ctx: Reader, filters: Filters) -> StreamingResponse:
    """Every indicator matching the list filters, one CSV row each."""
    chunks = service.csv_stream(_batches(request, ctx, filters))
    return _stream(chunks, "text/csv", "indicators.csv")


@router.get(
    "/indicators.txt",
    response_class=StreamingResponse,
    responses=STREAM,
    summary="Blocklist: one value per line",
)
async def export_txt(request: Request, ctx: Reader, filters: Filters) -> StreamingResponse:
    """For firewalls and proxies, e.g. `?type=ipv4&min_score=70`; false positives and expired left out."""
    chunks = service.txt_stream(_batches(request, ctx, blocklist_defaults(filters)))
    return _stream(chunks, "text/plain; charset=utf-8", "indicators.txt")


@router.get(
    "/indicators.misp.json",
    response_class=StreamingResponse,
    responses=STREAM,
    summary="Indicators as one MISP event (JSON)",
)
async def export_misp(
    request: Request,
    ctx: Reader,
    session: SessionDep,
    filters: Filters,
    info: Annotated[str, Query(min_length=1, max_length=200)] = "RaptorFlow export",
) -> StreamingResponse:
    """A MISP event whose attributes are the matching indicators (tags and TLP as MISP tags)."""
    org_name = await service.org_name(session, ctx.org_id)
    chunks = service.misp_stream(_batches(request, ctx, filters), org_name=org_name, info=info, now=utcnow())
    return _stream(chunks, "application/json", "indicators.misp.json")


@router.get(
    "/indicators.rules",
    response_class=StreamingResponse,
    responses=STREAM,
    summary="Suricata or Snort rules for IPs, domains (DNS, TLS SNI) and URLs",
)
async def export_rules(
    request: Request,
    ctx: Reader,
    filters: Filters,
    engine: Literal["suricata", "snort"] = "suricata",
) -> StreamingResponse:
    """Rules with stable sids; false positives and expired indicators left out unless asked."""
    chunks = service.rules_stream(_batches(request, ctx, blocklist_defaults(filters)), engine)
    return _stream(chunks, "text/plain; charset=utf-8", f"indicators.{engine}.rules")


@router.get(
    "/indicators.stix.json",
    response_class=StreamingResponse,
    responses=STREAM,
    summary="Indicators as a STIX 2.1 bundle",
)
async def export_stix(request: Request, ctx: Reader, filters: Filters) -> StreamingResponse:
    """A STIX 2.1 bundle of the matching indicators (built by the STIX mapping)."""
    chunks = service.stix_stream(request.app.state.session_factory, ctx.org_id, filters)
    return _stream(chunks, "application/stix+json;version=2.1", "indicators.stix.json")
