"""HTTP routes of reports: CRUD, archive, ATT&CK Navigator layer."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response

from raptorflow.accounts.schemas import Page
from raptorflow.auth.deps import require
from raptorflow.auth.permissions import Permission
from raptorflow.auth.principal import OrgContext
from raptorflow.intel.context_base import CommonFilters, ContextOut, LayerDomainParam
from raptorflow.intel.reports.repository import ReportRepository
from raptorflow.intel.reports.schemas import ObjectRefOut, ReportCreate, ReportOut, ReportUpdate
from raptorflow.intel.reports.service import ReportService
from raptorflow.kit.deps import SessionDep
from raptorflow.kit.pagination import CursorParam, LimitParam, sort_query
from raptorflow.kit.types import RFC3339
from raptorflow.models import Report

PREFIX = "/api/v1/reports"
router = APIRouter(prefix=PREFIX, tags=["reports"])

Read = Annotated[OrgContext, require(Permission.intel_read)]
Write = Annotated[OrgContext, require(Permission.intel_write)]
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "Not found (or not yours)"}}
ONE = "/{report_id}"


async def _shaped(service: ReportService, reports: Sequence[Report]) -> list[ReportOut]:
    names = await service.ref_names(reports)
    out = []
    for report in reports:
        refs = [
            ObjectRefOut(
                type=ref["type"],
                id=uuid.UUID(ref["id"]),
                name=names.get((ref["type"], uuid.UUID(ref["id"]))),
            )
            for ref in report.object_refs
        ]
        common = ContextOut.model_validate(report).model_dump()
        out.append(
            ReportOut(
                **common,
                title=report.title,
                body=report.body,
                published=report.published,
                attack_techniques=report.attack_techniques,
                object_refs=refs,
            )
        )
    return out


async def _one(service: ReportService, report: Report) -> ReportOut:
    return (await _shaped(service, [report]))[0]


@router.post("", status_code=201, summary="Create a report")
async def create_report(body: ReportCreate, ctx: Write, session: SessionDep, response: Response) -> ReportOut:
    """Create a report; each object_refs entry must name an object of this organization."""
    service = ReportService(session, ctx)
    report = await service.create(body)
    response.headers["Location"] = f"{PREFIX}/{report.id}"
    return await _one(service, report)


@router.get("", summary="List reports")
async def list_reports(
    ctx: Read,
    session: SessionDep,
    filters: CommonFilters,
    published_after: Annotated[RFC3339 | None, Query(description="Published at or after.")] = None,
    published_before: Annotated[RFC3339 | None, Query(description="Published before.")] = None,
    sort: Annotated[str | None, sort_query(ReportRepository.sort_keys, "-published,title")] = None,
    limit: LimitParam = 100,
    cursor: CursorParam = None,
) -> Page[ReportOut]:
    """Reports matching the filters; sort by title, created_at, updated_at, published."""
    service = ReportService(session, ctx)
    extra = {"published_after": published_after, "published_before": published_before}
    rows, nxt = await service.page(filters, sort=sort, cursor=cursor, limit=limit, extra=extra)
    return Page[ReportOut](items=await _shaped(service, rows), next_cursor=nxt)


@router.get(ONE, responses=NOT_FOUND, summary="Get a report")
async def get_report(report_id: uuid.UUID, ctx: Read, session: SessionDep) -> ReportOut:
    """One report, its references with their names."""
    service = ReportService(session, ctx)
    return await _one(service, await service.get(report_id))


@router.patch(ONE, responses=NOT_FOUND, summary="Update a report")
async def update_report(
    report_id: uuid.UUID, body: ReportUpdate, ctx: Write, session: SessionDep
) -> ReportOut:
    """Change the fields sent."""
    service = ReportService(session, ctx)
    return await _one(service, await service.update(report_id, body))


@router.delete(ONE, status_code=204, responses=NOT_FOUND, summary="Delete a report")
async def delete_report(report_id: uuid.UUID, ctx: Write, session: SessionDep) -> Response:
    """Delete (its creator, or an admin)."""
    await ReportService(session, ctx).delete(report_id)
    return Response(status_code=204)


@router.post(ONE + "/archive", responses=NOT_FOUND, summary="Archive a report")
async def archive_report(report_id: uuid.UUID, ctx: Write, session: SessionDep) -> ReportOut:
    """Hide from default lists (its creator, or an admin)."""
    service = ReportService(session, ctx)
    return await _one(service, await service.archive(report_id))


@router.post(ONE + "/unarchive", responses=NOT_FOUND, summary="Unarchive a report")
async def unarchive_report(report_id: uuid.UUID, ctx: Write, session: SessionDep) -> ReportOut:
    """Bring back an archived report (its creator, or an admin)."""
    service = ReportService(session, ctx)
    return await _one(service, await service.unarchive(report_id))


@router.get(ONE + "/attack-layer", responses=NOT_FOUND, summary="ATT&CK Navigator layer of a report")
async def report_attack_layer(
    report_id: uuid.UUID, ctx: Read, session: SessionDep, domain: LayerDomainParam = None
) -> dict[str, Any]:
    """The report's techniques as a Navigator 4.5 layer."""
    return await ReportService(session, ctx).attack_layer(report_id, domain)
