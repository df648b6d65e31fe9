"""HTTP routes of feeds: CRUD and run-now."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Request, Response

from raptorflow.accounts.schemas import Page
from raptorflow.auth.deps import require
from raptorflow.auth.permissions import Permission
from raptorflow.auth.principal import OrgContext
from raptorflow.kit.deps import SessionDep
from raptorflow.kit.pagination import CursorParam, LimitParam
from raptorflow.kit.web import ORJSONResponse
from raptorflow.sharing.feeds.schemas import FeedCreate, FeedOut, FeedUpdate
from raptorflow.sharing.feeds.service import FeedService, feed_out
from raptorflow.sharing.imports.schemas import ImportOut
from raptorflow.sharing.imports.service import view

router = APIRouter(prefix="/api/v1/feeds", tags=["feeds"])
Reader = Annotated[OrgContext, require(Permission.intel_read)]
Writer = Annotated[OrgContext, require(Permission.intel_write)]
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "Not found (or not yours)"}}
ONE = "/{feed_id}"


def _service(request: Request, session: Any, ctx: OrgContext) -> FeedService:
    return FeedService(session, ctx, request.app.state.settings)


@router.post("", status_code=201, response_model=FeedOut, summary="Subscribe to a feed")
async def create_feed(body: FeedCreate, request: Request, ctx: Writer, session: SessionDep) -> Response:
    """TAXII 2.1 collection, MISP feed, CSV or text list, with defaults and a schedule."""
    feed = await _service(request, session, ctx).create(body)
    return ORJSONResponse(feed_out(feed), status_code=201, headers={"Location": f"/api/v1/feeds/{feed.id}"})


@router.get("", response_model=Page[FeedOut], summary="List feeds")
async def list_feeds(
    request: Request, ctx: Reader, session: SessionDep, limit: LimitParam = 100, cursor: CursorParam = None
) -> Response:
    """Newest first, with their last run."""
    rows, nxt = await _service(request, session, ctx).page(limit, cursor)
    return ORJSONResponse({"items": [feed_out(f) for f in rows], "next_cursor": nxt})


@router.get(ONE, response_model=FeedOut, responses=NOT_FOUND, summary="Get a feed")
async def get_feed(feed_id: uuid.UUID, request: Request, ctx: Reader, session: SessionDep) -> Response:
    """One feed with its last-run status, counts and error."""
    return ORJSONResponse(feed_out(await _service(request, session, ctx).get(feed_id)))


@router.patch(ONE, response_model=FeedOut, responses=NOT_FOUND, summary="Update a feed")
async def update_feed(
    feed_id: uuid.UUID, body: FeedUpdate, request: Request, ctx: Writer, session: SessionDep
) -> Response:
    """Change settings; a new URL starts from no bookmark."""
    return ORJSONResponse(feed_out(await _service(request, session, ctx).update(feed_id, body)))


@router.delete(ONE, status_code=204, responses=NOT_FOUND, summary="Delete a feed")
async def delete_feed(feed_id: uuid.UUID, request: Request, ctx: Writer, session: SessionDep) -> Response:
    """Unsubscribe (indicators already pulled stay)."""
    await _service(request, session, ctx).delete(feed_id)
    return Response(status_code=204)


@router.post(
    ONE + "/run",
    status_code=202,
    response_model=ImportOut,
    responses={**NOT_FOUND, 409: {"description": "The feed is disabled"}},
    summary="Pull a feed now",
)
async def run_feed(feed_id: uuid.UUID, request: Request, ctx: Writer, session: SessionDep) -> Response:
    """Queues a pull job; follow the import it answers (GET /api/v1/imports/{id})."""
    row = await _service(request, session, ctx).run(feed_id)
    return ORJSONResponse(view(row, None), status_code=202, headers={"Location": f"/api/v1/imports/{row.id}"})
