"""HTTP routes: relationships between objects, and the neighbourhood of an object."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response

from raptorflow.accounts.repository import page_after
from raptorflow.accounts.schemas import Page
from raptorflow.auth.deps import require
from raptorflow.auth.permissions import Permission
from raptorflow.auth.principal import OrgContext
from raptorflow.intel.relationships import service
from raptorflow.intel.relationships.schemas import (
    RELATIONSHIP_TYPE_PATTERN,
    GraphEdge,
    GraphNode,
    Neighbourhood,
    RelationshipCreate,
    RelationshipOut,
    RelationshipUpdate,
)
from raptorflow.intel.relationships.service import RelationshipService
from raptorflow.kit.deps import SessionDep
from raptorflow.kit.pagination import CursorParam, LimitParam, decode_cursor, encode_cursor
from raptorflow.models import Relationship

router = APIRouter(prefix="/api/v1/relationships", tags=["relationships"])
graph = APIRouter(prefix="/api/v1/objects", tags=["relationships"])

Read = Annotated[OrgContext, require(Permission.intel_read)]
Write = Annotated[OrgContext, require(Permission.intel_write)]
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "Not found (or not yours)"}}


def _out(r: Relationship) -> RelationshipOut:
    return RelationshipOut.model_validate(r, from_attributes=True)


@router.post(
    "",
    status_code=201,
    responses={200: {"description": "The same relationship already existed", "model": RelationshipOut}},
    summary="Relate two objects (201; 200 with the existing one when it already exists)",
)
async def create_relationship(
    body: RelationshipCreate, ctx: Write, session: SessionDep, response: Response
) -> RelationshipOut:
    """Create a typed relationship; the ends' kinds are read from their ids."""
    relationship, created = await RelationshipService(session, ctx).create(body)
    response.headers["Location"] = f"/api/v1/relationships/{relationship.id}"
    if not created:
        response.status_code = 200
    return _out(relationship)


@router.get("", summary="List relationships")
async def list_relationships(
    ctx: Read,
    session: SessionDep,
    object_id: Annotated[uuid.UUID | None, Query(description="either end is this object")] = None,
    relationship_type: Annotated[str | None, Query(pattern=RELATIONSHIP_TYPE_PATTERN, max_length=32)] = None,
    limit: LimitParam = 100,
    cursor: CursorParam = None,
) -> Page[RelationshipOut]:
    """Relationships of the org, oldest first."""
    rows = await RelationshipService(session, ctx).list(
        object_id, relationship_type, page_after(decode_cursor(cursor)), limit
    )
    nxt = encode_cursor({"after": str(rows[-1].id)}) if len(rows) == limit else None
    return Page[RelationshipOut](items=[_out(r) for r in rows], next_cursor=nxt)


@router.get("/{relationship_id}", responses=NOT_FOUND, summary="Get a relationship")
async def get_relationship(relationship_id: uuid.UUID, ctx: Read, session: SessionDep) -> RelationshipOut:
    """One relationship."""
    return _out(await RelationshipService(session, ctx).get(relationship_id))


@router.patch("/{relationship_id}", responses=NOT_FOUND, summary="Update a relationship")
async def update_relationship(
    relationship_id: uuid.UUID, body: RelationshipUpdate, ctx: Write, session: SessionDep
) -> RelationshipOut:
    """Change the description or confidence."""
    return _out(await RelationshipService(session, ctx).update(relationship_id, body))


@router.delete(
    "/{relationship_id}",
    status_code=204,
    responses=NOT_FOUND,
    summary="Delete a relationship (editors their own, admins any)",
)
async def delete_relationship(relationship_id: uuid.UUID, ctx: Write, session: SessionDep) -> Response:
    """Delete a relationship."""
    await RelationshipService(session, ctx).delete(relationship_id)
    return Response(status_code=204)


@graph.get(
    "/{object_id}/neighbours",
    responses=NOT_FOUND,
    summary="An object and its neighbours within 1 or 2 hops (relationships and report references)",
)
async def object_neighbours(
    object_id: uuid.UUID,
    ctx: Read,
    session: SessionDep,
    depth: Annotated[int, Query(ge=1, le=service.MAX_DEPTH, description="hops (1 or 2)")] = 1,
) -> Neighbourhood:
    """Nodes and edges around an object, at most `MAX_NODES` nodes (`truncated` says when cut)."""
    found = await service.neighbours(session, ctx.org_id, object_id, depth)
    return Neighbourhood(
        nodes=[GraphNode(id=i, kind=kind, label=label) for i, (kind, label) in found.nodes.items()],
        edges=[
            GraphEdge(id=e_id, source=source, target=target, relationship_type=kind)
            for e_id, source, target, kind in found.edges.values()
        ],
        truncated=found.truncated,
    )
