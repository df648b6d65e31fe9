"""Project rules: unique names, workspace in the same org, archive rights, statistics."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from raptorflow.auth.principal import OrgContext
from raptorflow.intel.common import clean_tags, ensure_may_remove
from raptorflow.intel.projects.repository import FILED, ProjectRepository
from raptorflow.intel.projects.schemas import ProjectCreate, ProjectUpdate
from raptorflow.kit.db import new_id, utcnow
from raptorflow.kit.errors import Conflict, InvalidInput, NotFound, UnknownReference
from raptorflow.kit.pagination import decode_cursor, encode_cursor
from raptorflow.models import Project

KINDS = tuple(kind for kind, _m, _l in FILED)


class ProjectService:
    """Projects of one org; never commits."""

    def __init__(self, session: AsyncSession, ctx: OrgContext) -> None:
        self.session = session
        self.ctx = ctx
        self.repo = ProjectRepository(session, ctx.org_id)

    async def get(self, project_id: uuid.UUID) -> Project:
        """One project, or 404."""
        project = await self.repo.get(project_id)
        if project is None:
            raise NotFound()
        return project

    async def _check_workspace(self, workspace_id: uuid.UUID | None) -> None:
        if workspace_id is not None and not await self.repo.workspace_exists(workspace_id):
            raise UnknownReference("workspace_id", "workspace")

    async def create(self, body: ProjectCreate) -> Project:
        """Create a project (names are unique in the org)."""
        if await self.repo.name_taken(body.name):
            raise Conflict("A project with this name exists.", errors=[{"field": "name", "message": "taken"}])
        await self._check_workspace(body.workspace_id)
        project = Project(
            id=new_id(),
            org_id=self.ctx.org_id,
            name=body.name,
            description=body.description,
            tags=clean_tags(body.tags),
            workspace_id=body.workspace_id,
            created_by=self.ctx.principal.user_id,
        )
        await self.repo.add(project)
        return project

    async def update(self, project_id: uuid.UUID, body: ProjectUpdate) -> Project:
        """Change name, description, tags or workspace."""
        project = await self.get(project_id)
        changes = body.model_dump(exclude_unset=True)
        if "name" in changes and await self.repo.name_taken(changes["name"], other_than=project.id):
            raise Conflict("A project with this name exists.", errors=[{"field": "name", "message": "taken"}])
        if "tags" in changes:
            changes["tags"] = clean_tags(changes["tags"])
        if "workspace_id" in changes:
            await self._check_workspace(changes["workspace_id"])
        for key, value in changes.items():
            setattr(project, key, value)
        project.updated_at = utcnow()
        await self.session.flush()
        return project

    async def delete(self, project_id: uuid.UUID) -> None:
        """Delete a project; what was filed under it stays, unfiled."""
        project = await self.get(project_id)
        ensure_may_remove(self.ctx, project.created_by)
        await self.repo.remove(project)

    async def set_archived(self, project_id: uuid.UUID, archived: bool) -> Project:
        """Archive or restore."""
        project = await self.get(project_id)
        ensure_may_remove(self.ctx, project.created_by)
        if (project.archived_at is not None) != archived:
            project.archived_at = utcnow() if archived else None
            project.updated_at = utcnow()
            await self.session.flush()
        return project

    async def page(
        self, *, archived: bool, tag: str | None, q: str | None, limit: int, cursor: str | None
    ) -> tuple[list[Project], str | None]:
        """Projects, keyset-paged by id."""
        position = decode_cursor(cursor)
        after = None
        if position:
            try:
                after = uuid.UUID(str(position.get("after")))
            except ValueError:
                raise InvalidInput("cursor", "not a cursor returned by this API") from None
        tag_clean = clean_tags([tag], "tag")[0] if tag else None
        rows = list(await self.repo.page(archived=archived, tag=tag_clean, q=q, after=after, limit=limit))
        nxt = encode_cursor({"after": str(rows[-1].id)}) if len(rows) == limit else None
        return rows, nxt

    async def stats(self, project_id: uuid.UUID) -> dict[str, Any]:
        """Counts by type, classification, score band; objects per kind; last activity."""
        project = await self.get(project_id)
        return await self.repo.stats(project.id)

    async def objects(
        self, project_id: uuid.UUID, kind: str | None, limit: int, cursor: str | None
    ) -> tuple[list[dict[str, Any]], str | None]:
        """Everything filed under the project, most recently updated first."""
        project = await self.get(project_id)
        if kind is not None and kind not in KINDS:
            raise InvalidInput("kind", f"accepted: {', '.join(KINDS)}")
        position = decode_cursor(cursor)
        after = None
        if position:
            try:
                after = (datetime.fromisoformat(str(position["u"])), uuid.UUID(str(position["id"])))
            except (KeyError, ValueError):
                raise InvalidInput("cursor", "not a cursor returned by this API") from None
        rows = await self.repo.objects(project.id, [kind] if kind else list(KINDS), after, limit)
        items = [{"id": i, "kind": k, "label": label, "updated_at": u} for k, i, label, u in rows]
        nxt = None
        if len(rows) == limit:
            nxt = encode_cursor({"u": rows[-1][3].isoformat(), "id": str(rows[-1][1])})
        return items, nxt
