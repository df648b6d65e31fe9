"""HTTP routes of projects."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response

from raptorflow.accounts.schemas import Page
from raptorflow.auth.deps import require
from raptorflow.auth.permissions import Permission
from raptorflow.auth.principal import OrgContext
from raptorflow.intel.projects.schemas import (
    ProjectCreate,
    ProjectObject,
    ProjectOut,
    ProjectStats,
    ProjectUpdate,
)
from raptorflow.intel.projects.service import ProjectService
from raptorflow.kit.deps import SessionDep
from raptorflow.kit.pagination import CursorParam, LimitParam
from raptorflow.models import Project

router = APIRouter(prefix="/api/v1/projects", tags=["projects"])
Reader = Annotated[OrgContext, require(Permission.intel_read)]
Writer = Annotated[OrgContext, require(Permission.intel_write)]
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "Not found (or not yours)"}}
ONE = "/{project_id}"


def _out(p: Project) -> ProjectOut:
    return ProjectOut(
        id=p.id,
        name=p.name,
        description=p.description,
        tags=p.tags,
        workspace_id=p.workspace_id,
        archived=p.archived_at is not None,
        archived_at=p.archived_at,
        created_by=p.created_by,
        created_at=p.created_at,
        updated_at=p.updated_at,
    )


@router.post("", status_code=201, summary="Create a project")
async def create_project(
    body: ProjectCreate, ctx: Writer, session: SessionDep, response: Response
) -> ProjectOut:
    """Create a project."""
    project = await ProjectService(session, ctx).create(body)
    response.headers["Location"] = f"/api/v1/projects/{project.id}"
    return _out(project)


@router.get("", summary="List projects")
async def list_projects(
    ctx: Reader,
    session: SessionDep,
    archived: bool = False,
    tag: Annotated[str | None, Query(max_length=64)] = None,
    q: Annotated[str | None, Query(max_length=200)] = None,
    limit: LimitParam = 100,
    cursor: CursorParam = None,
) -> Page[ProjectOut]:
    """Projects of the org (archived ones with `archived=true`)."""
    rows, nxt = await ProjectService(session, ctx).page(
        archived=archived, tag=tag, q=q, limit=limit, cursor=cursor
    )
    return Page[ProjectOut](items=[_out(p) for p in rows], next_cursor=nxt)


@router.get(ONE, responses=NOT_FOUND, summary="Get a project")
async def get_project(project_id: uuid.UUID, ctx: Reader, session: SessionDep) -> ProjectOut:
    """One project."""
    return _out(await ProjectService(session, ctx).get(project_id))


@router.patch(ONE, responses=NOT_FOUND, summary="Update a project")
async def update_project(
    project_id: uuid.UUID, body: ProjectUpdate, ctx: Writer, session: SessionDep
) -> ProjectOut:
    """Rename, describe, tag or move to a workspace."""
    return _out(await ProjectService(session, ctx).update(project_id, body))


@router.delete(ONE, status_code=204, responses=NOT_FOUND, summary="Delete a project (objects stay, unfiled)")
async def delete_project(project_id: uuid.UUID, ctx: Writer, session: SessionDep) -> Response:
    """Delete a project."""
    await ProjectService(session, ctx).delete(project_id)
    return Response(status_code=204)


@router.post(ONE + "/archive", responses=NOT_FOUND, summary="Archive a project")
async def archive_project(project_id: uuid.UUID, ctx: Writer, session: SessionDep) -> ProjectOut:
    """Archive."""
    return _out(await ProjectService(session, ctx).set_archived(project_id, True))


@router.post(ONE + "/unarchive", responses=NOT_FOUND, summary="Restore a project")
async def unarchive_project(project_id: uuid.UUID, ctx: Writer, session: SessionDep) -> ProjectOut:
    """Restore."""
    return _out(await ProjectService(session, ctx).set_archived(project_id, False))


@router.get(ONE + "/stats", responses=NOT_FOUND, summary="What the project holds")
async def project_stats(project_id: uuid.UUID, ctx: Reader, session: SessionDep) -> ProjectStats:
    """Counts by type, classification and score band; objects per kind; last activity."""
    return ProjectStats.model_validate(await ProjectService(session, ctx).stats(project_id))


@router.get(ONE + "/objects", responses=NOT_FOUND, summary="Objects filed under the project")
async def project_objects(
    project_id: uuid.UUID,
    ctx: Reader,
    session: SessionDep,
    kind: Annotated[str | None, Query(max_length=32)] = None,
    limit: LimitParam = 100,
    cursor: CursorParam = None,
) -> Page[ProjectObject]:
    """Indicators, actors, campaigns, vulnerabilities and reports of the project."""
    items, nxt = await ProjectService(session, ctx).objects(project_id, kind, limit, cursor)
    return Page[ProjectObject](items=[ProjectObject.model_validate(i) for i in items], next_cursor=nxt)
