"""HTTP routes of vulnerabilities: CRUD and archive."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response

from raptorflow.accounts.schemas import Page
from raptorflow.auth.deps import require
from raptorflow.auth.permissions import Permission
from raptorflow.auth.principal import OrgContext
from raptorflow.intel.context_base import CommonFilters
from raptorflow.intel.vulnerabilities.repository import VulnerabilityRepository
from raptorflow.intel.vulnerabilities.schemas import (
    Severity,
    VulnerabilityCreate,
    VulnerabilityOut,
    VulnerabilityUpdate,
)
from raptorflow.intel.vulnerabilities.service import VulnerabilityService
from raptorflow.kit.deps import SessionDep
from raptorflow.kit.pagination import CursorParam, LimitParam, sort_query

PREFIX = "/api/v1/vulnerabilities"
router = APIRouter(prefix=PREFIX, tags=["vulnerabilities"])

Read = Annotated[OrgContext, require(Permission.intel_read)]
Write = Annotated[OrgContext, require(Permission.intel_write)]
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "Not found (or not yours)"}}
ONE = "/{vulnerability_id}"


def _out(vulnerability: Any) -> VulnerabilityOut:
    return VulnerabilityOut.model_validate(vulnerability)


@router.post(
    "", status_code=201, responses={409: {"description": "CVE id taken"}}, summary="Create a vulnerability"
)
async def create_vulnerability(
    body: VulnerabilityCreate, ctx: Write, session: SessionDep, response: Response
) -> VulnerabilityOut:
    """Create a vulnerability; CVSS scores and severity are computed from the vectors."""
    vulnerability = await VulnerabilityService(session, ctx).create(body)
    response.headers["Location"] = f"{PREFIX}/{vulnerability.id}"
    return _out(vulnerability)


@router.get("", summary="List vulnerabilities")
async def list_vulnerabilities(
    ctx: Read,
    session: SessionDep,
    filters: CommonFilters,
    kev: Annotated[bool | None, Query(description="In CISA KEV (true) or not (false).")] = None,
    min_cvss: Annotated[
        float | None,
        Query(ge=0, le=10, description="CVSS base score at least this (v4 when scored, else v3)."),
    ] = None,
    severity: Annotated[Severity | None, Query(description="This severity.")] = None,
    sort: Annotated[str | None, sort_query(VulnerabilityRepository.sort_keys, "-epss,cve_id")] = None,
    limit: LimitParam = 100,
    cursor: CursorParam = None,
) -> Page[VulnerabilityOut]:
    """Vulnerabilities matching the filters; sort by cve_id, created_at, updated_at, published,
    cvss_v3_score, cvss_v4_score, epss (missing values sort lowest)."""
    extra = {"kev": kev, "min_cvss": min_cvss, "severity": severity.value if severity else None}
    rows, nxt = await VulnerabilityService(session, ctx).page(
        filters, sort=sort, cursor=cursor, limit=limit, extra=extra
    )
    return Page[VulnerabilityOut](items=[_out(v) for v in rows], next_cursor=nxt)


@router.get(ONE, responses=NOT_FOUND, summary="Get a vulnerability")
async def get_vulnerability(vulnerability_id: uuid.UUID, ctx: Read, session: SessionDep) -> VulnerabilityOut:
    """One vulnerability."""
    return _out(await VulnerabilityService(session, ctx).get(vulnerability_id))


@router.patch(ONE, responses=NOT_FOUND, summary="Update a vulnerability")
async def update_vulnerability(
    vulnerability_id: uuid.UUID, body: VulnerabilityUpdate, ctx: Write, session: SessionDep
) -> VulnerabilityOut:
    """Change the fields sent (scores follow the vectors)."""
    return _out(await VulnerabilityService(session, ctx).update(vulnerability_id, body))


@router.delete(ONE, status_code=204, responses=NOT_FOUND, summary="Delete a vulnerability")
async def delete_vulnerability(vulnerability_id: uuid.UUID, ctx: Write, session: SessionDep) -> Response:
    """Delete (its creator, or an admin)."""
    await VulnerabilityService(session, ctx).delete(vulnerability_id)
    return Response(status_code=204)


@router.post(ONE + "/archive", responses=NOT_FOUND, summary="Archive a vulnerability")
async def archive_vulnerability(
    vulnerability_id: uuid.UUID, ctx: Write, session: SessionDep
) -> VulnerabilityOut:
    """Hide from default lists (its creator, or an admin)."""
    return _out(await VulnerabilityService(session, ctx).archive(vulnerability_id))


@router.post(ONE + "/unarchive", responses=NOT_FOUND, summary="Unarchive a vulnerability")
async def unarchive_vulnerability(
    vulnerability_id: uuid.UUID, ctx: Write, session: SessionDep
) -> VulnerabilityOut:
    """Bring back an archived vulnerability (its creator, or an admin)."""
    return _out(await VulnerabilityService(session, ctx).unarchive(vulnerability_id))
