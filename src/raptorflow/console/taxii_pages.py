"""Console settings page of an org's TAXII 2.1 collections: list with their URLs, create, delete.

The rules are the collection service's (sharing/taxii): the same validation, audit and permissions as
POST/DELETE /api/v1/taxii-collections (members read, admins write).
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from raptorflow.accounts.repository import OrganizationRepository
from raptorflow.auth.permissions import Permission
from raptorflow.console.forms import read_form
from raptorflow.console.web import ConsoleRoute, OrgPage, field_errors, org_page, redirect, render
from raptorflow.intel.projects.service import ProjectService
from raptorflow.kit.deps import SessionDep
from raptorflow.kit.errors import NotFound, RaptorFlowError
from raptorflow.sharing.taxii.repository import TaxiiRepository
from raptorflow.sharing.taxii.schemas import CollectionCreate, CollectionFilter
from raptorflow.sharing.taxii.service import INDICATOR_TYPES, CollectionService, collection_url

router = APIRouter(prefix="/o/{org_id}/settings", route_class=ConsoleRoute, include_in_schema=False)
Reader = Annotated[OrgPage, org_page(Permission.intel_read)]
Admin = Annotated[OrgPage, org_page(Permission.intel_admin)]
TLPS = ("clear", "green", "amber", "amber+strict", "red")


async def _page(
    request: Request,
    page: OrgPage,
    session: Any,
    *,
    errors: dict[str, str] | None = None,
    values: dict[str, Any] | None = None,
    message: str | None = None,
    status: int = 200,
) -> Response:
    org = await OrganizationRepository(session).get(page.org_id)
    if org is None:
        raise NotFound()
    public_url = request.app.state.settings.link_base
    rows = await TaxiiRepository(session, page.org_id).collections()
    projects: list[Any] = []
    if page.can(Permission.intel_admin):
        projects, _ = await ProjectService(session, page.ctx).page(
            archived=False, tag=None, q=None, limit=200, cursor=None
        )
    names = {str(p.id): p.name for p in projects}
    return render(
        request,
        "settings/taxii.html",
        {
            "collections": [
                {
                    "row": r,
                    "url": collection_url(public_url, org.slug, r.id),
                    "filter": _describe(r.filter, names),
                }
                for r in rows
            ],
            "api_root": f"{public_url.rstrip('/')}/taxii2/{org.slug}/",
            "discovery": f"{public_url.rstrip('/')}/taxii2/",
            "projects": projects,
            "types": sorted(INDICATOR_TYPES),
            "tlps": TLPS,
            "errors": errors or {},
            "values": values or {},
            "message": message,
        },
        page=page,
        status=status,
    )


def _describe(spec: dict[str, Any], project_names: dict[str, str]) -> list[str]:
    """The stored filter as short phrases ('everything' when empty)."""
    out = []
    if spec.get("project_id"):
        out.append("project " + project_names.get(str(spec["project_id"]), str(spec["project_id"])[:8] + "…"))
    if spec.get("types"):
        out.append("types " + ", ".join(spec["types"]))
    if spec.get("tags"):
        out.append("any tag of " + ", ".join(spec["tags"]))
    if spec.get("min_score") is not None:
        out.append(f"score ≥ {spec['min_score']}")
    if spec.get("tlp_max"):
        out.append(f"TLP up to {spec['tlp_max']}")
    return out or ["every indicator"]


@router.get("/taxii")
async def taxii_collections(request: Request, page: Reader, session: SessionDep) -> Response:
    """The org's TAXII collections with the URL clients use; controls for admins."""
    return await _page(request, page, session)


FILTER_FIELDS = ("project_id", "tags", "types", "min_score", "tlp_max")


@router.post("/taxii")
async def create_collection(request: Request, page: Admin, session: SessionDep) -> Response:
    """Define a collection (title, filter, read/write) through the collection service."""
    form = await request.form()
    data = read_form(form, CollectionCreate, ("title", "description", "can_read", "can_write"))
    data.nest("filter", read_form(form, CollectionFilter, FILTER_FIELDS, many={"types"}))
    try:
        row = await CollectionService(session, page.ctx).create(data.build(CollectionCreate))
    except RaptorFlowError as exc:
        await session.rollback()
        return await _page(
            request, page, session, errors=field_errors(exc), values=data.shown, status=exc.status
        )
    return await _page(request, page, session, message=f"Collection “{row.title}” created.")


@router.post("/taxii/{collection_id}/delete")
async def delete_collection(collection_id: uuid.UUID, page: Admin, session: SessionDep) -> Response:
    """Delete a collection (clients lose it; the intelligence it served stays)."""
    await CollectionService(session, page.ctx).delete(collection_id)
    return redirect(page.url("/settings/taxii"))
