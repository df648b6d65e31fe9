"""SQL of jobs."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import select

from raptorflow.kit.tenancy import TenantRepository
from raptorflow.models import Job


class JobRepository(TenantRepository):
    """Jobs of one organization."""

    model = Job

    async def add(self, job: Job) -> None:
        """Insert a job."""
        self.session.add(job)
        await self.session.flush()

    async def get(self, job_id: uuid.UUID) -> Job | None:
        """One job by id."""
        return await self.session.scalar(self.scoped(select(Job).where(Job.id == job_id)))

    async def page(
        self, *, status: str | None, kind: str | None, before: uuid.UUID | None, limit: int
    ) -> Sequence[Job]:
        """Newest jobs first, filtered."""
        stmt = self.scoped(select(Job))
        if status:
            stmt = stmt.where(Job.status == status)
        if kind:
            stmt = stmt.where(Job.kind == kind)
        if before is not None:
            stmt = stmt.where(Job.id < before)
        return (await self.session.scalars(stmt.order_by(Job.id.desc()).limit(limit))).all()
