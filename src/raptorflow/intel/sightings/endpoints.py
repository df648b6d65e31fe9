"""HTTP routes: sightings of indicators."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Response

from raptorflow.accounts.repository import page_after
from raptorflow.accounts.schemas import Page
from raptorflow.auth.deps import require
from raptorflow.auth.permissions import Permission
from raptorflow.auth.principal import OrgContext
from raptorflow.intel.sightings.schemas import SightingCreate, SightingOut
from raptorflow.intel.sightings.service import SightingService
from raptorflow.kit.deps import SessionDep
from raptorflow.kit.pagination import CursorParam, LimitParam, decode_cursor, encode_cursor
from raptorflow.models import Sighting

router = APIRouter(prefix="/api/v1", tags=["sightings"])

Read = Annotated[OrgContext, require(Permission.intel_read)]
Write = Annotated[OrgContext, require(Permission.intel_write)]
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "Not found (or not yours)"}}


def _out(s: Sighting) -> SightingOut:
    return SightingOut.model_validate(s, from_attributes=True)


@router.post(
    "/indicators/{indicator_id}/sightings",
    status_code=201,
    responses=NOT_FOUND,
    summary="Record a sighting (refreshes the indicator's last_seen and sightings_count)",
)
async def create_sighting(
    indicator_id: uuid.UUID, body: SightingCreate, ctx: Write, session: SessionDep, response: Response
) -> SightingOut:
    """Record that an indicator was seen."""
    sighting = await SightingService(session, ctx).create(indicator_id, body)
    response.headers["Location"] = f"/api/v1/sightings/{sighting.id}"
    return _out(sighting)


@router.get("/indicators/{indicator_id}/sightings", responses=NOT_FOUND, summary="Sightings of an indicator")
async def list_sightings(
    indicator_id: uuid.UUID,
    ctx: Read,
    session: SessionDep,
    limit: LimitParam = 100,
    cursor: CursorParam = None,
) -> Page[SightingOut]:
    """Sightings of an indicator, newest first."""
    rows = await SightingService(session, ctx).list(indicator_id, page_after(decode_cursor(cursor)), limit)
    nxt = encode_cursor({"after": str(rows[-1].id)}) if len(rows) == limit else None
    return Page[SightingOut](items=[_out(s) for s in rows], next_cursor=nxt)


@router.get("/sightings/{sighting_id}", responses=NOT_FOUND, summary="Get a sighting")
async def get_sighting(sighting_id: uuid.UUID, ctx: Read, session: SessionDep) -> SightingOut:
    """One sighting."""
    return _out(await SightingService(session, ctx).get(sighting_id))


@router.delete(
    "/sightings/{sighting_id}",
    status_code=204,
    responses=NOT_FOUND,
    summary="Delete a sighting (editors their own, admins any)",
)
async def delete_sighting(sighting_id: uuid.UUID, ctx: Write, session: SessionDep) -> Response:
    """Delete a sighting; its count comes off the indicator."""
    await SightingService(session, ctx).delete(sighting_id)
    return Response(status_code=204)
