"""HTTP routes of lookups."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from raptorflow.auth.deps import require
from raptorflow.auth.permissions import Permission
from raptorflow.auth.principal import OrgContext
from raptorflow.intel.lookup.schemas import BatchIn, BatchOut, LookupResult
from raptorflow.intel.lookup.service import LookupService
from raptorflow.kit.deps import SessionDep
from raptorflow.kit.web import ORJSONResponse

router = APIRouter(prefix="/api/v1/lookup", tags=["lookup"])
Reader = Annotated[OrgContext, require(Permission.intel_read)]


@router.get(
    "", response_model=LookupResult, summary="Look up one value (type detected, refanged, normalized)"
)
async def lookup_one(
    ctx: Reader,
    session: SessionDep,
    value: Annotated[str, Query(min_length=1, max_length=2048)],
    include_expired: bool = False,
) -> Response:
    """found: false (200) for unknown values."""
    answers = await LookupService(session, ctx).lookup([value], include_expired=include_expired)
    return ORJSONResponse(answers[0])


@router.post("", response_model=BatchOut, summary="Look up to 10,000 values in one set-based query")
async def lookup_many(body: BatchIn, ctx: Reader, session: SessionDep) -> Response:
    """One result per value, in the order given."""
    answers = await LookupService(session, ctx).lookup(body.values, include_expired=body.include_expired)
    return ORJSONResponse({"results": answers})
