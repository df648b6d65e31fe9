"""SQL of projects: CRUD, statistics and the objects filed under a project."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import case, func, literal, select, union_all

from raptorflow.kit.tenancy import TenantRepository
from raptorflow.models import Campaign, Indicator, Project, Report, ThreatActor, Vulnerability, Workspace

# (kind, model, label column) of everything that can be filed under a project.
FILED: tuple[tuple[str, Any, Any], ...] = (
    ("indicator", Indicator, Indicator.value),
    ("threat-actor", ThreatActor, ThreatActor.name),
    ("campaign", Campaign, Campaign.name),
    ("vulnerability", Vulnerability, Vulnerability.cve_id),
    ("report", Report, Report.title),
)


class ProjectRepository(TenantRepository):
    """Projects of one organization."""

    model = Project

    async def get(self, project_id: uuid.UUID) -> Project | None:
        """One project by id."""
        return await self.session.scalar(self.scoped(select(Project).where(Project.id == project_id)))

    async def name_taken(self, name: str, other_than: uuid.UUID | None = None) -> bool:
        """True when another project of the org has this name."""
        stmt = self.scoped(select(Project.id).where(Project.name == name))
        if other_than is not None:
            stmt = stmt.where(Project.id != other_than)
        return (await self.session.scalar(stmt)) is not None

    async def workspace_exists(self, workspace_id: uuid.UUID) -> bool:
        """True when the workspace belongs to this org."""
        stmt = select(Workspace.id).where(Workspace.id == workspace_id, Workspace.org_id == self.org_id)
        return (await self.session.scalar(stmt)) is not None

    async def add(self, project: Project) -> None:
        """Insert a project."""
        self.session.add(project)
        await self.session.flush()

    async def remove(self, project: Project) -> None:
        """Delete a project (objects filed under it keep existing, unfiled)."""
        await self.session.delete(project)
        await self.session.flush()

    async def page(
        self, *, archived: bool, tag: str | None, q: str | None, after: uuid.UUID | None, limit: int
    ) -> Sequence[Project]:
        """Projects by id, filtered."""
        stmt = self.scoped(select(Project))
        stmt = stmt.where(Project.archived_at.is_not(None) if archived else Project.archived_at.is_(None))
        if q:
            stmt = stmt.where(func.lower(Project.name).contains(q.lower(), autoescape=True))
        if after is not None:
            stmt = stmt.where(Project.id > after)
        rows = list(
            (await self.session.scalars(stmt.order_by(Project.id).limit(limit * 4 if tag else limit))).all()
        )
        if tag:
            # Projects are few per org; the tag filter runs in Python rather than per-dialect JSON SQL.
            rows = [p for p in rows if tag in p.tags][:limit]
        return rows

    async def stats(self, project_id: uuid.UUID) -> dict[str, Any]:
        """Counts of what the project holds."""
        scope = (Indicator.org_id == self.org_id, Indicator.project_id == project_id)
        out: dict[str, Any] = {}
        for name, column in (("by_type", Indicator.type), ("by_classification", Indicator.classification)):
            rows = await self.session.execute(select(column, func.count()).where(*scope).group_by(column))
            out[name] = {k: int(n) for k, n in rows.all()}
        band = case(
            (Indicator.score >= 75, "75-100"),
            (Indicator.score >= 50, "50-74"),
            (Indicator.score >= 25, "25-49"),
            else_="0-24",
        )
        rows = await self.session.execute(select(band, func.count()).where(*scope).group_by(band))
        out["by_score_band"] = {k: int(n) for k, n in rows.all()}
        out["indicators"] = sum(out["by_type"].values())
        counts = [
            select(literal(kind), func.count(), func.max(model.updated_at)).where(
                model.org_id == self.org_id, model.project_id == project_id
            )
            for kind, model, _label in FILED
        ]
        objects: dict[str, int] = {}
        last: datetime | None = None
        for kind, n, latest in (await self.session.execute(union_all(*counts))).all():
            objects[kind] = int(n)
            if latest is not None:
                latest_dt = latest if isinstance(latest, datetime) else datetime.fromisoformat(str(latest))
                last = latest_dt if last is None or latest_dt > last else last
        out["objects"] = objects
        out["last_activity"] = last
        return out

    async def objects(
        self,
        project_id: uuid.UUID,
        kinds: Sequence[str],
        after: tuple[datetime, uuid.UUID] | None,
        limit: int,
    ) -> list[tuple[str, uuid.UUID, str, datetime]]:
        """Objects filed under the project, most recently updated first, one UNION query."""
        parts = []
        for kind, model, label in FILED:
            if kind not in kinds:
                continue
            part = select(
                literal(kind).label("kind"),
                model.id.label("id"),
                label.label("label"),
                model.updated_at.label("updated_at"),
            ).where(model.org_id == self.org_id, model.project_id == project_id)
            parts.append(part)
        union = union_all(*parts).subquery()
        stmt = select(union.c.kind, union.c.id, union.c.label, union.c.updated_at)
        if after is not None:
            stmt = stmt.where(
                (union.c.updated_at < after[0]) | ((union.c.updated_at == after[0]) & (union.c.id < after[1]))
            )
        stmt = stmt.order_by(union.c.updated_at.desc(), union.c.id.desc()).limit(limit)
        return [(k, i, lbl, u) for k, i, lbl, u in (await self.session.execute(stmt)).all()]
