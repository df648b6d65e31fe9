"""Console pages of context objects (actors, campaigns, vulnerabilities, reports) and projects.

One table describes each kind's form controls (read by console.forms); the services and their schemas do
all validation.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel

from raptorflow.auth.permissions import Permission
from raptorflow.console.charts import graph_layout, markdown_html
from raptorflow.console.forms import Control, choices, read_controls, read_form, shown_values
from raptorflow.console.web import (
    ConsoleRoute,
    OrgPage,
    field_errors,
    form_text,
    org_page,
    redirect,
    render,
)
from raptorflow.intel.actors.schemas import Motivation, Sophistication, ThreatActorCreate, ThreatActorUpdate
from raptorflow.intel.actors.service import ThreatActorService
from raptorflow.intel.attack import service as attack
from raptorflow.intel.campaigns.schemas import CampaignCreate, CampaignUpdate
from raptorflow.intel.campaigns.service import CampaignService
from raptorflow.intel.context_base import ContextFilters, ContextService
from raptorflow.intel.projects.schemas import ProjectCreate, ProjectUpdate
from raptorflow.intel.projects.service import ProjectService
from raptorflow.intel.relationships import service as relationships
from raptorflow.intel.reports.schemas import ReportCreate, ReportUpdate
from raptorflow.intel.reports.service import ReportService
from raptorflow.intel.vulnerabilities.schemas import VulnerabilityCreate, VulnerabilityUpdate
from raptorflow.intel.vulnerabilities.service import VulnerabilityService
from raptorflow.kit.deps import SessionDep
from raptorflow.kit.errors import NotFound, RaptorFlowError

router = APIRouter(prefix="/o/{org_id}", route_class=ConsoleRoute, include_in_schema=False)
Reader = Annotated[OrgPage, org_page(Permission.intel_read)]
Writer = Annotated[OrgPage, org_page(Permission.intel_write)]
PAGE_SIZE = 50
TLPS = ["clear", "green", "amber", "amber+strict", "red"]


@dataclass(frozen=True)
class KindPage:
    """How one context kind shows in the console."""

    slug: str
    label: str
    plural: str
    service: type[ContextService[Any, Any]]
    create: type[BaseModel]
    update: type[BaseModel]
    title_attr: str
    fields: tuple[Control, ...]
    columns: tuple[tuple[str, str], ...]
    has_techniques: bool = True


COMMON = (
    Control("description", "Description", "textarea"),
    Control("tags", "Tags (comma-separated)", "list"),
    Control("tlp", "TLP", "select", choices(TLPS), blank=False),
)
KINDS: dict[str, KindPage] = {
    k.slug: k
    for k in (
        KindPage(
            "actors",
            "Threat actor",
            "Threat actors",
            ThreatActorService,
            ThreatActorCreate,
            ThreatActorUpdate,
            "name",
            (
                Control("name", "Name", required=True),
                Control("aliases", "Aliases (comma-separated)", "list"),
                Control("motivation", "Motivation", "select", choices([m.value for m in Motivation])),
                Control(
                    "sophistication", "Sophistication", "select", choices([s.value for s in Sophistication])
                ),
                Control("country", "Country (ISO code)"),
                Control("first_seen", "First seen", "date"),
                Control("last_seen", "Last seen", "date"),
                Control("attack_techniques", "ATT&CK techniques (T1059, …)", "list"),
                *COMMON,
            ),
            (
                ("name", "Name"),
                ("country", "Country"),
                ("motivation", "Motivation"),
                ("last_seen", "Last seen"),
            ),
        ),
        KindPage(
            "campaigns",
            "Campaign",
            "Campaigns",
            CampaignService,
            CampaignCreate,
            CampaignUpdate,
            "name",
            (
                Control("name", "Name", required=True),
                Control("aliases", "Aliases (comma-separated)", "list"),
                Control("objective", "Objective", "textarea"),
                Control("first_seen", "First seen", "date"),
                Control("last_seen", "Last seen", "date"),
                Control("attack_techniques", "ATT&CK techniques (T1059, …)", "list"),
                *COMMON,
            ),
            (("name", "Name"), ("first_seen", "First seen"), ("last_seen", "Last seen")),
        ),
        KindPage(
            "vulnerabilities",
            "Vulnerability",
            "Vulnerabilities",
            VulnerabilityService,
            VulnerabilityCreate,
            VulnerabilityUpdate,
            "cve_id",
            (
                Control("cve_id", "CVE id", required=True),
                Control("cvss_v3_vector", "CVSS v3.1 vector"),
                Control("cvss_v4_vector", "CVSS v4.0 vector"),
                Control("kev", "In CISA KEV", "checkbox"),
                Control("epss", "EPSS (0 to 1)", "number", step="any", minimum=0, maximum=1),
                Control("published", "Published", "date"),
                *COMMON,
            ),
            (("cve_id", "CVE"), ("severity", "Severity"), ("cvss_v3_score", "CVSS v3"), ("kev", "KEV")),
            has_techniques=False,
        ),
        KindPage(
            "reports",
            "Report",
            "Reports",
            ReportService,
            ReportCreate,
            ReportUpdate,
            "title",
            (
                Control("title", "Title", required=True),
                Control("body", "Body (markdown)", "textarea"),
                Control("published", "Published", "date"),
                Control("attack_techniques", "ATT&CK techniques (T1059, …)", "list"),
                *COMMON,
            ),
            (("title", "Title"), ("published", "Published"), ("tlp", "TLP")),
        ),
    )
}


def _kind(slug: str) -> KindPage:
    found = KINDS.get(slug)
    if found is None:
        raise NotFound()
    return found


async def _matrix(session: Any, techniques: Sequence[str]) -> dict[str, Any]:
    """ATT&CK tactics as columns with their techniques; the object's own (and parents of its
    sub-techniques) highlighted."""
    wanted = {t.strip().upper() for t in techniques if isinstance(t, str)}
    parents = {t.split(".")[0] for t in wanted}
    # One matrix per ATT&CK domain (ICS reuses Enterprise's tactic shortnames): the object's main one.
    domain = await attack.main_domain_of(session, sorted(wanted))
    tactics = await attack.tactics(session, domain)
    if not tactics:
        return {"loaded": False, "columns": [], "wanted": sorted(wanted)}
    rows = await attack.technique_page(
        session,
        after=None,
        limit=1000,
        q=None,
        tactic=None,
        platform=None,
        include_subtechniques=False,
        domain=domain,
    )
    columns = []
    for tactic in tactics:
        cells = [
            {"id": t.external_id, "name": t.name, "hit": t.external_id in wanted or t.external_id in parents}
            for t in rows
            if tactic.shortname in (t.tactics or [])
        ]
        cells.sort(key=lambda c: (not c["hit"], c["name"]))
        columns.append({"name": tactic.name, "id": tactic.external_id, "cells": cells})
    return {"loaded": True, "columns": columns, "wanted": sorted(wanted), "domain": domain}


def _context_of(kind: KindPage, page: OrgPage, obj: Any | None, **extra: Any) -> dict[str, Any]:
    return {"kind": kind, "obj": obj, "kinds": KINDS, **extra}


@router.get("/projects")
async def projects(
    request: Request,
    page: Reader,
    session: SessionDep,
    q: Annotated[str, Query(max_length=200)] = "",
    cursor: Annotated[str | None, Query(max_length=512)] = None,
    archived: bool = False,
) -> Response:
    """Projects, keyset-paged."""
    rows, nxt = await ProjectService(session, page.ctx).page(
        archived=archived, tag=None, q=q.strip() or None, limit=PAGE_SIZE, cursor=cursor
    )
    return render(
        request,
        "projects.html",
        {"items": rows, "next_cursor": nxt, "q": q, "archived": archived, "errors": {}, "values": {}},
        page=page,
    )


PROJECT_FIELDS = ("name", "description", "tags")


@router.post("/projects")
async def create_project(request: Request, page: Writer, session: SessionDep) -> Response:
    """Create a project."""
    data = read_form(await request.form(), ProjectCreate, PROJECT_FIELDS, text={"description"})
    try:
        project = await ProjectService(session, page.ctx).create(data.build(ProjectCreate))
    except RaptorFlowError as exc:
        await session.rollback()
        rows, nxt = await ProjectService(session, page.ctx).page(
            archived=False, tag=None, q=None, limit=PAGE_SIZE, cursor=None
        )
        return render(
            request,
            "projects.html",
            {
                "items": rows,
                "next_cursor": nxt,
                "q": "",
                "archived": False,
                "errors": field_errors(exc),
                "values": data.shown,
            },
            page=page,
            status=exc.status,
        )
    return redirect(page.url(f"/projects/{project.id}"))


async def _project_page(
    request: Request,
    page: OrgPage,
    session: Any,
    project_id: uuid.UUID,
    cursor: str | None = None,
    *,
    errors: dict[str, str] | None = None,
    values: dict[str, Any] | None = None,
    status: int = 200,
) -> Response:
    service = ProjectService(session, page.ctx)
    project = await service.get(project_id)
    stats = await service.stats(project_id)
    objects, nxt = await service.objects(project_id, None, PAGE_SIZE, cursor)
    return render(
        request,
        "project.html",
        {
            "obj": project,
            "stats": stats,
            "objects": objects,
            "next_cursor": nxt,
            "errors": errors or {},
            "values": values if values is not None else shown_values(project, PROJECT_FIELDS),
        },
        page=page,
        status=status,
    )


@router.get("/projects/{project_id}")
async def project_detail(
    request: Request,
    project_id: uuid.UUID,
    page: Reader,
    session: SessionDep,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
) -> Response:
    """A project: its figures, what is filed under it, an edit form."""
    return await _project_page(request, page, session, project_id, cursor)


@router.post("/projects/{project_id}")
async def edit_project(
    request: Request, project_id: uuid.UUID, page: Writer, session: SessionDep
) -> Response:
    """Save a project's name, description and tags (what the user changed)."""
    service = ProjectService(session, page.ctx)
    current = shown_values(await service.get(project_id), PROJECT_FIELDS)
    data = read_form(await request.form(), ProjectUpdate, PROJECT_FIELDS, edit=True, text={"description"})
    try:
        await service.update(project_id, data.changed_from(current).build(ProjectUpdate))
    except RaptorFlowError as exc:
        await session.rollback()
        return await _project_page(
            request, page, session, project_id, errors=field_errors(exc), values=data.shown, status=exc.status
        )
    return redirect(page.url(f"/projects/{project_id}"))


@router.post("/projects/{project_id}/archive")
async def archive_project(
    request: Request, project_id: uuid.UUID, page: Writer, session: SessionDep
) -> Response:
    """Archive or restore a project."""
    form = await request.form()
    await ProjectService(session, page.ctx).set_archived(project_id, form_text(form, "restore") != "1")
    return redirect(page.url(f"/projects/{project_id}"))


@router.get("/{kind}")
async def kind_list(
    request: Request,
    kind: str,
    page: Reader,
    session: SessionDep,
    q: Annotated[str, Query(max_length=200)] = "",
    cursor: Annotated[str | None, Query(max_length=512)] = None,
    archived: bool = False,
) -> Response:
    """Objects of a kind: search, keyset paging, a create form for editors."""
    spec = _kind(kind)
    rows, nxt = await spec.service(session, page.ctx).page(
        ContextFilters(q=q.strip() or None, archived=archived), sort=None, cursor=cursor, limit=PAGE_SIZE
    )
    return render(
        request,
        "kind_list.html",
        _context_of(
            spec,
            page,
            None,
            items=rows,
            next_cursor=nxt,
            q=q,
            archived=archived,
            errors={},
            values={"tlp": "amber"},
        ),
        page=page,
    )


@router.post("/{kind}")
async def kind_create(request: Request, kind: str, page: Writer, session: SessionDep) -> Response:
    """Create an object of a kind."""
    spec = _kind(kind)
    data = read_controls(await request.form(), spec.create, spec.fields)
    try:
        obj = await spec.service(session, page.ctx).create(data.build(spec.create))
    except RaptorFlowError as exc:
        await session.rollback()
        rows, nxt = await spec.service(session, page.ctx).page(
            ContextFilters(), sort=None, cursor=None, limit=PAGE_SIZE
        )
        return render(
            request,
            "kind_list.html",
            _context_of(
                spec,
                page,
                None,
                items=rows,
                next_cursor=nxt,
                q="",
                archived=False,
                errors=field_errors(exc),
                values=data.shown,
            ),
            page=page,
            status=exc.status,
        )
    return redirect(page.url(f"/{kind}/{obj.id}"))


async def _detail(
    request: Request,
    spec: KindPage,
    page: OrgPage,
    session: Any,
    object_id: uuid.UUID,
    *,
    errors: dict[str, str] | None = None,
    values: dict[str, Any] | None = None,
    status: int = 200,
) -> Response:
    service = spec.service(session, page.ctx)
    obj = await service.get(object_id)
    graph = await relationships.neighbours(session, page.org_id, object_id, 1)
    nodes, edges = graph_layout(object_id, graph.nodes, [(e[1], e[2], e[3]) for e in graph.edges.values()])
    body_html = markdown_html(obj.body) if spec.slug == "reports" else None
    return render(
        request,
        "kind_detail.html",
        _context_of(
            spec,
            page,
            obj,
            nodes=nodes,
            edges=edges,
            truncated=graph.truncated,
            body_html=body_html,
            title=str(getattr(obj, spec.title_attr)),
            errors=errors or {},
            values=values if values is not None else shown_values(obj, [f.name for f in spec.fields]),
        ),
        page=page,
        status=status,
    )


@router.get("/{kind}/{object_id}")
async def kind_detail(
    request: Request, kind: str, object_id: uuid.UUID, page: Reader, session: SessionDep
) -> Response:
    """One object: fields, rendered report body, neighbourhood graph, edit form for editors."""
    return await _detail(request, _kind(kind), page, session, object_id)


@router.post("/{kind}/{object_id}")
async def kind_edit(
    request: Request, kind: str, object_id: uuid.UUID, page: Writer, session: SessionDep
) -> Response:
    """Save an edit: the fields the user changed, PATCHed through the service."""
    spec = _kind(kind)
    service = spec.service(session, page.ctx)
    current = shown_values(await service.get(object_id), [f.name for f in spec.fields])
    data = read_controls(await request.form(), spec.update, spec.fields, edit=True)
    try:
        await service.update(object_id, data.changed_from(current).build(spec.update))
    except RaptorFlowError as exc:
        await session.rollback()
        return await _detail(
            request,
            spec,
            page,
            session,
            object_id,
            errors=field_errors(exc),
            values=data.shown,
            status=exc.status,
        )
    return redirect(page.url(f"/{kind}/{object_id}"))


@router.post("/{kind}/{object_id}/archive")
async def kind_archive(
    request: Request, kind: str, object_id: uuid.UUID, page: Writer, session: SessionDep
) -> Response:
    """Archive or restore (creator or admin: the service's rule)."""
    spec = _kind(kind)
    form = await request.form()
    service = spec.service(session, page.ctx)
    if form_text(form, "restore") == "1":
        await service.unarchive(object_id)
    else:
        await service.archive(object_id)
    return redirect(page.url(f"/{kind}/{object_id}"))


@router.get("/{kind}/{object_id}/attack")
async def kind_matrix(
    request: Request, kind: str, object_id: uuid.UUID, page: Reader, session: SessionDep
) -> Response:
    """The ATT&CK matrix (tactics as columns) with this object's techniques highlighted."""
    spec = _kind(kind)
    if not spec.has_techniques:
        raise NotFound()
    obj = await spec.service(session, page.ctx).get(object_id)
    matrix = await _matrix(session, obj.attack_techniques or [])
    return render(
        request,
        "matrix.html",
        _context_of(
            spec,
            page,
            obj,
            matrix=matrix,
            title=str(getattr(obj, spec.title_attr)),
            generated=datetime.now(UTC),
        ),
        page=page,
    )
