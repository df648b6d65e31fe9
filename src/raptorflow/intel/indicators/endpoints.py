"""HTTP routes of indicators."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Response

from raptorflow.accounts.schemas import Page
from raptorflow.auth.deps import require
from raptorflow.auth.permissions import Permission
from raptorflow.auth.principal import OrgContext
from raptorflow.intel.indicators.schemas import (
    BulkIn,
    BulkOut,
    BulkUpdateIn,
    BulkUpdateOut,
    FalsePositiveIn,
    HistoryEntry,
    IndicatorCreate,
    IndicatorOut,
    IndicatorUpdate,
    ScoringSettings,
    ScoringSettingsIn,
    Stats,
    indicator_filters,
)
from raptorflow.intel.indicators.service import SORTABLE, IndicatorService, to_out
from raptorflow.kit.db import utcnow
from raptorflow.kit.deps import SessionDep
from raptorflow.kit.pagination import CursorParam, LimitParam, sort_query
from raptorflow.kit.web import ORJSONResponse

router = APIRouter(prefix="/api/v1/indicators", tags=["indicators"])
Reader = Annotated[OrgContext, require(Permission.intel_read)]
Writer = Annotated[OrgContext, require(Permission.intel_write)]
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "Not found (or not yours)"}}
# `:uuid`: only an id reaches these routes, so `GET /bulk` or `PATCH /scoring` is a 405 naming the methods
# of `/bulk` and `/scoring`, not a 422 for an id that is not one.
ONE = "/{indicator_id:uuid}"


async def _out(service: IndicatorService, rows: list[Any]) -> list[dict[str, Any]]:
    now = utcnow()
    half_lives = await service.half_lives()
    return [to_out(r, now, half_lives) for r in rows]


def _page(items: list[dict[str, Any]], next_cursor: str | None) -> ORJSONResponse:
    return ORJSONResponse({"items": items, "next_cursor": next_cursor})


@router.post(
    "",
    status_code=201,
    response_model=IndicatorOut,
    responses={
        200: {
            "model": IndicatorOut,
            "description": "Merged into the existing indicator with the same type and value",
        }
    },
    summary="Create an indicator (or merge into the existing one)",
)
async def create_indicator(body: IndicatorCreate, ctx: Writer, session: SessionDep) -> Response:
    """201 with the new indicator, or 200 with the existing one after merging."""
    service = IndicatorService(session, ctx)
    row, created = await service.create(body)
    payload = (await _out(service, [row]))[0]
    headers = {"Location": f"/api/v1/indicators/{row.id}"} if created else None
    return ORJSONResponse(payload, status_code=201 if created else 200, headers=headers)


@router.get(
    "", response_model=Page[IndicatorOut], summary="List indicators with filters, sort and cursor paging"
)
async def list_indicators(
    ctx: Reader,
    session: SessionDep,
    filters: Annotated[dict[str, Any], Depends(indicator_filters)],
    sort: Annotated[str | None, sort_query(SORTABLE, "-last_seen,score")] = None,
    limit: LimitParam = 100,
    cursor: CursorParam = None,
) -> Response:
    """Indicators of the org; archived ones only with `archived=true`."""
    service = IndicatorService(session, ctx)
    rows, nxt = await service.list_page(filters, sort, limit, cursor)
    return _page(await _out(service, rows), nxt)


@router.get(
    "/search", response_model=Page[IndicatorOut], summary="Substring search over value, tags and description"
)
async def search_indicators(
    ctx: Reader,
    session: SessionDep,
    q: Annotated[str, Query(min_length=1, max_length=200)],
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    cursor: CursorParam = None,
) -> Response:
    """First page fast, no exact count; newest first."""
    service = IndicatorService(session, ctx)
    rows, nxt = await service.search(q, limit, cursor)
    return _page(await _out(service, rows), nxt)


@router.get("/stats", summary="Counts by type, classification, TLP, score band; added per day")
async def indicator_stats(ctx: Reader, session: SessionDep) -> Stats:
    """Dashboard figures over live indicators."""
    return Stats.model_validate(await IndicatorService(session, ctx).stats())


@router.post("/bulk", response_model=BulkOut, summary="Create or merge up to 1,000 indicators")
async def bulk_create(body: BulkIn, ctx: Writer, session: SessionDep) -> Response:
    """Per-item results; one bad item never rejects the others."""
    out = await IndicatorService(session, ctx).bulk(body.items)
    # Dumped once here: a returned model would be validated again and serialized field by field.
    return ORJSONResponse(out.model_dump(mode="json"))


@router.patch("/bulk", summary="Set tags, classification or archived on every indicator matching a filter")
async def bulk_update(body: BulkUpdateIn, ctx: Writer, session: SessionDep) -> BulkUpdateOut:
    """How many indicators changed."""
    return BulkUpdateOut(matched=await IndicatorService(session, ctx).bulk_update(body))


@router.get("/scoring", summary="Score half-lives per indicator type")
async def get_scoring(ctx: Reader, session: SessionDep) -> ScoringSettings:
    """Days for a score to halve since last seen, per type (null = never)."""
    return ScoringSettings(half_life_days=await IndicatorService(session, ctx).scoring_settings())


@router.put("/scoring", summary="Set the org's score half-lives (admin)")
async def put_scoring(
    body: ScoringSettingsIn, ctx: Annotated[OrgContext, require(Permission.intel_admin)], session: SessionDep
) -> ScoringSettings:
    """Override half-lives; types left out keep the default."""
    return ScoringSettings(
        half_life_days=await IndicatorService(session, ctx).set_scoring(body.half_life_days)
    )


@router.get(ONE, response_model=IndicatorOut, responses=NOT_FOUND, summary="Get an indicator")
async def get_indicator(indicator_id: uuid.UUID, ctx: Reader, session: SessionDep) -> Response:
    """One indicator with its effective score."""
    service = IndicatorService(session, ctx)
    return ORJSONResponse((await _out(service, [await service.get(indicator_id)]))[0])


@router.patch(ONE, response_model=IndicatorOut, responses=NOT_FOUND, summary="Update an indicator")
async def update_indicator(
    indicator_id: uuid.UUID, body: IndicatorUpdate, ctx: Writer, session: SessionDep
) -> Response:
    """Change analyst fields."""
    service = IndicatorService(session, ctx)
    return ORJSONResponse((await _out(service, [await service.update(indicator_id, body)]))[0])


@router.delete(ONE, status_code=204, responses=NOT_FOUND, summary="Delete an indicator")
async def delete_indicator(indicator_id: uuid.UUID, ctx: Writer, session: SessionDep) -> Response:
    """Editors delete their own; admins any."""
    await IndicatorService(session, ctx).delete(indicator_id)
    return Response(status_code=204)


@router.post(
    ONE + "/archive", response_model=IndicatorOut, responses=NOT_FOUND, summary="Archive an indicator"
)
async def archive_indicator(indicator_id: uuid.UUID, ctx: Writer, session: SessionDep) -> Response:
    """Hide from default lists and lookups."""
    service = IndicatorService(session, ctx)
    return ORJSONResponse((await _out(service, [await service.set_archived(indicator_id, True)]))[0])


@router.post(
    ONE + "/unarchive", response_model=IndicatorOut, responses=NOT_FOUND, summary="Restore an indicator"
)
async def unarchive_indicator(indicator_id: uuid.UUID, ctx: Writer, session: SessionDep) -> Response:
    """Bring an archived indicator back."""
    service = IndicatorService(session, ctx)
    return ORJSONResponse((await _out(service, [await service.set_archived(indicator_id, False)]))[0])


@router.post(
    ONE + "/false-positive",
    response_model=IndicatorOut,
    responses=NOT_FOUND,
    summary="Mark as false positive",
)
async def mark_false_positive(
    indicator_id: uuid.UUID, body: FalsePositiveIn, ctx: Writer, session: SessionDep
) -> Response:
    """Effective score drops to 0; lookups say so."""
    service = IndicatorService(session, ctx)
    return ORJSONResponse(
        (await _out(service, [await service.set_false_positive(indicator_id, body.reason)]))[0]
    )


@router.delete(
    ONE + "/false-positive",
    response_model=IndicatorOut,
    responses=NOT_FOUND,
    summary="Clear the false-positive mark",
)
async def unmark_false_positive(indicator_id: uuid.UUID, ctx: Writer, session: SessionDep) -> Response:
    """Undo a false-positive mark."""
    service = IndicatorService(session, ctx)
    return ORJSONResponse((await _out(service, [await service.set_false_positive(indicator_id, None)]))[0])


@router.get(ONE + "/history", responses=NOT_FOUND, summary="Who changed what, when")
async def indicator_history(
    indicator_id: uuid.UUID,
    ctx: Reader,
    session: SessionDep,
    limit: LimitParam = 100,
    cursor: CursorParam = None,
) -> dict[str, Any]:
    """Changes, newest first; the last entry is the creation."""
    items, nxt = await IndicatorService(session, ctx).history(indicator_id, limit, cursor)
    return {"items": [HistoryEntry.model_validate(i).model_dump() for i in items], "next_cursor": nxt}
