"""HTTP routes of threat actors: CRUD, archive, ATT&CK Navigator layer, import from an ATT&CK group."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Response

from raptorflow.accounts.schemas import Page
from raptorflow.auth.deps import require
from raptorflow.auth.permissions import Permission
from raptorflow.auth.principal import OrgContext
from raptorflow.intel.actors.repository import ThreatActorRepository
from raptorflow.intel.actors.schemas import Motivation, ThreatActorCreate, ThreatActorOut, ThreatActorUpdate
from raptorflow.intel.actors.service import ThreatActorService, normalize_country
from raptorflow.intel.context_base import CommonFilters, LayerDomainParam
from raptorflow.kit.deps import SessionDep
from raptorflow.kit.pagination import CursorParam, LimitParam, sort_query

PREFIX = "/api/v1/threat-actors"
router = APIRouter(prefix=PREFIX, tags=["threat actors"])

Read = Annotated[OrgContext, require(Permission.intel_read)]
Write = Annotated[OrgContext, require(Permission.intel_write)]
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "Not found (or not yours)"}}
ONE = "/{actor_id}"


def _out(actor: Any) -> ThreatActorOut:
    return ThreatActorOut.model_validate(actor)


@router.post(
    "", status_code=201, responses={409: {"description": "Name taken"}}, summary="Create a threat actor"
)
async def create_actor(
    body: ThreatActorCreate, ctx: Write, session: SessionDep, response: Response
) -> ThreatActorOut:
    """Create a threat actor."""
    actor = await ThreatActorService(session, ctx).create(body)
    response.headers["Location"] = f"{PREFIX}/{actor.id}"
    return _out(actor)


@router.get("", summary="List threat actors")
async def list_actors(
    ctx: Read,
    session: SessionDep,
    filters: CommonFilters,
    country: Annotated[str | None, Query(max_length=16, description="ISO 3166-1 alpha-2 code.")] = None,
    motivation: Annotated[Motivation | None, Query(description="Primary motivation.")] = None,
    sort: Annotated[str | None, sort_query(ThreatActorRepository.sort_keys, "-last_seen,name")] = None,
    limit: LimitParam = 100,
    cursor: CursorParam = None,
) -> Page[ThreatActorOut]:
    """Threat actors matching the filters; sort by name, created_at, updated_at, first_seen, last_seen."""
    extra = {
        "country": normalize_country(country) if country is not None else None,
        "motivation": motivation.value if motivation is not None else None,
    }
    rows, nxt = await ThreatActorService(session, ctx).page(
        filters, sort=sort, cursor=cursor, limit=limit, extra=extra
    )
    return Page[ThreatActorOut](items=[_out(a) for a in rows], next_cursor=nxt)


@router.post(
    "/from-attack/{group_id}",
    responses={201: {"description": "Imported"}, 404: {"description": "No such ATT&CK group"}},
    summary="Import an ATT&CK group as a threat actor (200 with the existing one when already imported)",
)
async def import_attack_group(
    group_id: Annotated[str, Path(json_schema_extra={"pattern": "^[Gg][0-9]{4}$"}, description="e.g. G0007")],
    ctx: Write,
    session: SessionDep,
    response: Response,
) -> ThreatActorOut:
    """Create the org's actor for an ATT&CK group (name, aliases, description, techniques), once."""
    actor, created = await ThreatActorService(session, ctx).import_group(group_id)
    if created:
        response.status_code = 201
        response.headers["Location"] = f"{PREFIX}/{actor.id}"
    return _out(actor)


@router.get(ONE, responses=NOT_FOUND, summary="Get a threat actor")
async def get_actor(actor_id: uuid.UUID, ctx: Read, session: SessionDep) -> ThreatActorOut:
    """One threat actor."""
    return _out(await ThreatActorService(session, ctx).get(actor_id))


@router.patch(ONE, responses=NOT_FOUND, summary="Update a threat actor")
async def update_actor(
    actor_id: uuid.UUID, body: ThreatActorUpdate, ctx: Write, session: SessionDep
) -> ThreatActorOut:
    """Change the fields sent."""
    return _out(await ThreatActorService(session, ctx).update(actor_id, body))


@router.delete(ONE, status_code=204, responses=NOT_FOUND, summary="Delete a threat actor")
async def delete_actor(actor_id: uuid.UUID, ctx: Write, session: SessionDep) -> Response:
    """Delete (its creator, or an admin)."""
    await ThreatActorService(session, ctx).delete(actor_id)
    return Response(status_code=204)


@router.post(ONE + "/archive", responses=NOT_FOUND, summary="Archive a threat actor")
async def archive_actor(actor_id: uuid.UUID, ctx: Write, session: SessionDep) -> ThreatActorOut:
    """Hide from default lists (its creator, or an admin)."""
    return _out(await ThreatActorService(session, ctx).archive(actor_id))


@router.post(ONE + "/unarchive", responses=NOT_FOUND, summary="Unarchive a threat actor")
async def unarchive_actor(actor_id: uuid.UUID, ctx: Write, session: SessionDep) -> ThreatActorOut:
    """Bring back an archived actor (its creator, or an admin)."""
    return _out(await ThreatActorService(session, ctx).unarchive(actor_id))


@router.get(ONE + "/attack-layer", responses=NOT_FOUND, summary="ATT&CK Navigator layer of a threat actor")
async def actor_attack_layer(
    actor_id: uuid.UUID, ctx: Read, session: SessionDep, domain: LayerDomainParam = None
) -> dict[str, Any]:
    """The actor's techniques as a Navigator 4.5 layer (open it in the ATT&CK Navigator)."""
    return await ThreatActorService(session, ctx).attack_layer(actor_id, domain)
