"""HTTP routes of campaigns: CRUD, archive, ATT&CK Navigator layer."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Response

from raptorflow.accounts.schemas import Page
from raptorflow.auth.deps import require
from raptorflow.auth.permissions import Permission
from raptorflow.auth.principal import OrgContext
from raptorflow.intel.campaigns.repository import CampaignRepository
from raptorflow.intel.campaigns.schemas import CampaignCreate, CampaignOut, CampaignUpdate
from raptorflow.intel.campaigns.service import CampaignService
from raptorflow.intel.context_base import CommonFilters, LayerDomainParam
from raptorflow.kit.deps import SessionDep
from raptorflow.kit.pagination import CursorParam, LimitParam, sort_query

PREFIX = "/api/v1/campaigns"
router = APIRouter(prefix=PREFIX, tags=["campaigns"])

Read = Annotated[OrgContext, require(Permission.intel_read)]
Write = Annotated[OrgContext, require(Permission.intel_write)]
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "Not found (or not yours)"}}
ONE = "/{campaign_id}"


def _out(campaign: Any) -> CampaignOut:
    return CampaignOut.model_validate(campaign)


@router.post("", status_code=201, responses={409: {"description": "Name taken"}}, summary="Create a campaign")
async def create_campaign(
    body: CampaignCreate, ctx: Write, session: SessionDep, response: Response
) -> CampaignOut:
    """Create a campaign."""
    campaign = await CampaignService(session, ctx).create(body)
    response.headers["Location"] = f"{PREFIX}/{campaign.id}"
    return _out(campaign)


@router.get("", summary="List campaigns")
async def list_campaigns(
    ctx: Read,
    session: SessionDep,
    filters: CommonFilters,
    sort: Annotated[str | None, sort_query(CampaignRepository.sort_keys, "-last_seen,name")] = None,
    limit: LimitParam = 100,
    cursor: CursorParam = None,
) -> Page[CampaignOut]:
    """Campaigns matching the filters; sort by name, created_at, updated_at, first_seen, last_seen."""
    rows, nxt = await CampaignService(session, ctx).page(filters, sort=sort, cursor=cursor, limit=limit)
    return Page[CampaignOut](items=[_out(c) for c in rows], next_cursor=nxt)


@router.get(ONE, responses=NOT_FOUND, summary="Get a campaign")
async def get_campaign(campaign_id: uuid.UUID, ctx: Read, session: SessionDep) -> CampaignOut:
    """One campaign."""
    return _out(await CampaignService(session, ctx).get(campaign_id))


@router.patch(ONE, responses=NOT_FOUND, summary="Update a campaign")
async def update_campaign(
    campaign_id: uuid.UUID, body: CampaignUpdate, ctx: Write, session: SessionDep
) -> CampaignOut:
    """Change the fields sent."""
    return _out(await CampaignService(session, ctx).update(campaign_id, body))


@router.delete(ONE, status_code=204, responses=NOT_FOUND, summary="Delete a campaign")
async def delete_campaign(campaign_id: uuid.UUID, ctx: Write, session: SessionDep) -> Response:
    """Delete (its creator, or an admin)."""
    await CampaignService(session, ctx).delete(campaign_id)
    return Response(status_code=204)


@router.post(ONE + "/archive", responses=NOT_FOUND, summary="Archive a campaign")
async def archive_campaign(campaign_id: uuid.UUID, ctx: Write, session: SessionDep) -> CampaignOut:
    """Hide from default lists (its creator, or an admin)."""
    return _out(await CampaignService(session, ctx).archive(campaign_id))


@router.post(ONE + "/unarchive", responses=NOT_FOUND, summary="Unarchive a campaign")
async def unarchive_campaign(campaign_id: uuid.UUID, ctx: Write, session: SessionDep) -> CampaignOut:
    """Bring back an archived campaign (its creator, or an admin)."""
    return _out(await CampaignService(session, ctx).unarchive(campaign_id))


@router.get(ONE + "/attack-layer", responses=NOT_FOUND, summary="ATT&CK Navigator layer of a campaign")
async def campaign_attack_layer(
    campaign_id: uuid.UUID, ctx: Read, session: SessionDep, domain: LayerDomainParam = None
) -> dict[str, Any]:
    """The campaign's techniques as a Navigator 4.5 layer."""
    return await CampaignService(session, ctx).attack_layer(campaign_id, domain)
