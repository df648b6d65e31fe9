"""`raptorflow import` and `raptorflow export`: resolve the operator's org and project names, store a
local file as an import of the org and run its job in this process with progress."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from raptorflow.auth.permissions import Role
from raptorflow.auth.principal import OrgContext, Principal
from raptorflow.config import Settings
from raptorflow.jobs.service import run_inline
from raptorflow.kit.errors import InvalidInput, NotFound
from raptorflow.kit.tenancy import bind_org
from raptorflow.models import Job, Organization, Project
from raptorflow.sharing.imports.repository import ImportRepository
from raptorflow.sharing.imports.schemas import ImportOptions
from raptorflow.sharing.imports.service import CHUNK, ImportService, view


async def org_by_slug(session: AsyncSession, slug: str) -> uuid.UUID:
    """The id of the organization with this slug; 404 naming it otherwise."""
    org_id = await session.scalar(select(Organization.id).where(Organization.slug == slug))
    if org_id is None:
        raise NotFound(f"No organization has the slug {slug!r}.")
    return org_id


async def project_by_ref(session: AsyncSession, org_id: uuid.UUID, ref: str) -> uuid.UUID:
    """A project of the org named by id or by name."""
    try:
        wanted = uuid.UUID(ref)
        stmt = select(Project.id).where(Project.org_id == org_id, Project.id == wanted)
    except ValueError:
        stmt = select(Project.id).where(Project.org_id == org_id, Project.name == ref)
    found = await session.scalar(stmt)
    if found is None:
        raise InvalidInput("project", f"no project {ref!r} in this organization")
    return found


async def _file_chunks(path: Any) -> AsyncIterator[bytes]:
    with open(path, "rb") as handle:  # noqa: ASYNC230 — local CLI input, read in 1 MB pieces
        while True:
            piece = handle.read(CHUNK)
            if not piece:
                return
            yield piece


async def import_file(
    factory: async_sessionmaker[AsyncSession],
    settings: Settings,
    org_slug: str,
    path: Any,
    fmt: str | None,
    options: ImportOptions,
    project: str | None,
    on_progress: Callable[[int, int, dict[str, Any]], None],
) -> dict[str, Any]:
    """`raptorflow import`: store the file as an import of the org, run its job here, report progress."""
    async with factory() as session:
        org_id = await org_by_slug(session, org_slug)
        await bind_org(session, org_id)
        if project is not None:
            options = options.model_copy(
                update={"project_id": await project_by_ref(session, org_id, project)}
            )
        ctx = OrgContext(
            principal=Principal(user_id=None, user_agent="raptorflow-cli"), org_id=org_id, role=Role.owner
        )
        row, job = await ImportService(session, ctx).create(
            fmt, str(getattr(path, "name", path)), options, _file_chunks(path)
        )
        size, import_id, job_id = row.size_bytes, row.id, job.id
        await session.commit()
    runner = asyncio.create_task(run_inline(factory, settings, job_id, org_id, max_wait_s=0))
    while not runner.done():
        await asyncio.sleep(0.25)
        async with factory() as session:
            await bind_org(session, org_id)
            live = (
                await session.execute(
                    select(Job.processed, Job.counts).where(Job.id == job_id, Job.org_id == org_id)
                )
            ).first()
            await session.rollback()
        if live is not None:
            counts = dict(live.counts or {})
            on_progress(
                int(counts.get("bytes_read", 0)), size, {"processed": int(live.processed or 0), **counts}
            )
    await runner
    async with factory() as session:
        await bind_org(session, org_id)
        final = await ImportRepository(session, org_id).get(import_id)
        final_job = await session.scalar(select(Job).where(Job.id == job_id, Job.org_id == org_id))
        assert final is not None
        out = view(final, final_job)
        await session.rollback()
    on_progress(
        size, size, {"processed": out["processed"], **{k: out[k] for k in ("created", "merged", "rejected")}}
    )
    return out
