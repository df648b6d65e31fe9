"""Console pages of context objects (actors, campaigns, vulnerabilities, reports) and projects.

One table describes each kind's form fields; the services and their schemas do all validation.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, ValidationError

from raptorflow.auth.permissions import Permission
from raptorflow.console.charts import graph_layout, markdown_html
from raptorflow.console.web import (
    ConsoleRoute,
    OrgPage,
    field_errors,
    form_list,
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
class Field:
    """One form field: name, label, widget (text, textarea, list, select, date, number, checkbox)."""

    name: str
    label: str
    widget: str = "text"
    options: Sequence[str] = ()
    required: bool = False


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
    fields: tuple[Field, ...]
    columns: tuple[tuple[str, str], ...]
    has_techniques: bool = True


COMMON = (
    Field("description", "Description", "textarea"),
    Field("tags", "Tags (comma-separated)", "list"),
    Field("tlp", "TLP", "select", TLPS),
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
                Field("name", "Name", required=True),
                Field("aliases", "Aliases (comma-separated)", "list"),
                Field("motivation", "Motivation", "select", [m.value for m in Motivation]),
                Field("sophistication", "Sophistication", "select", [s.value for s in Sophistication]),
                Field("country", "Country (ISO code)"),
                Field("first_seen", "First seen", "date"),
                Field("last_seen", "Last seen", "date"),
                Field("attack_techniques", "ATT&CK techniques (T1059, …)", "list"),
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
                Field("name", "Name", required=True),
                Field("aliases", "Aliases (comma-separated)", "list"),
                Field("objective", "Objective", "textarea"),
                Field("first_seen", "First seen", "date"),
                Field("last_seen", "Last seen", "date"),
                Field("attack_techniques", "ATT&CK techniques (T1059, …)", "list"),
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
                Field("cve_id", "CVE id", required=True),
                Field("cvss_v3_vector", "CVSS v3.1 vector"),
                Field("cvss_v4_vector", "CVSS v4.0 vector"),
                Field("kev", "In CISA KEV", "checkbox"),
                Field("epss", "EPSS (0 to 1)", "number"),
                Field("published", "Published", "date"),
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
                Field("title", "Title", required=True),
                Field("body", "Body (markdown)", "textarea"),
                Field("published", "Published", "date"),
                Field("attack_techniques", "ATT&CK techniques (T1059, …)", "list"),
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


def _form_values(form: Any, fields: Sequence[Field], *, partial: bool) -> dict[str, Any]:
    """The submitted fields as the schema expects them (blank = not set on create, cleared on edit)."""
    out: dict[str, Any] = {}
    for f in fields:
        if f.widget == "list":
            out[f.name] = form_list(form, f.name)
        elif f.widget == "checkbox":
            out[f.name] = form_text(form, f.name) in ("1", "on", "true")
        else:
            value = form_text(form, f.name)
            if f.widget == "textarea":
                out[f.name] = value
            elif value == "":
                if partial and not f.required and f.name != "tlp":
                    out[f.name] = None
            elif f.widget == "date":
                out[f.name] = value + "T00:00:00Z" if len(value) == 10 else value
            else:
                out[f.name] = value
    return out


def _field_values(obj: Any, fields: Sequence[Field]) -> dict[str, Any]:
    """An object's current values, as the form shows them."""
    out: dict[str, Any] = {}
    for f in fields:
        value = getattr(obj, f.name, None)
        if f.widget == "list":
            out[f.name] = ", ".join(value or [])
        elif f.widget == "date":
            out[f.name] = value.date().isoformat() if isinstance(value, datetime) else ""
        elif f.widget == "checkbox":
            out[f.name] = bool(value)
        else:
            out[f.name] = "" if value is None else value
    return out


async def _matrix(session: Any, techniques: Sequence[str]) -> dict[str, Any]:
    """ATT&CK tactics as columns with their techniques; the object's own (and parents of its
    sub-techniques) highlighted."""
    wanted = {t.strip().upper() for t in techniques if isinstance(t, str)}
    parents = {t.split(".")[0] for t in wanted}
    tactics = await attack.tactics(session)
    if not tactics:
        return {"loaded": False, "columns": [], "wanted": sorted(wanted)}
    rows = await attack.technique_page(
        session, after=None, limit=1000, q=None, tactic=None, platform=None, include_subtechniques=False
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
    return {"loaded": True, "columns": columns, "wanted": sorted(wanted)}


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


def _project_values(form: Any) -> dict[str, Any]:
    return {
        "name": form_text(form, "name"),
        "description": form_text(form, "description"),
        "tags": form_list(form, "tags"),
    }


@router.post("/projects")
async def create_project(request: Request, page: Writer, session: SessionDep) -> Response:
    """Create a project."""
    values = _project_values(await request.form())
    try:
        project = await ProjectService(session, page.ctx).create(ProjectCreate.model_validate(values))
    except (RaptorFlowError, ValidationError) as exc:
        await session.rollback()
        return render(
            request,
            "projects.html",
            {
                "items": [],
                "next_cursor": None,
                "q": "",
                "archived": False,
                "errors": field_errors(exc),
                "values": {**values, "tags": ", ".join(values["tags"])},
            },
            page=page,
            status=exc.status if isinstance(exc, RaptorFlowError) else 422,
        )
    return redirect(page.url(f"/projects/{project.id}"))


@router.get("/projects/{project_id}")
async def project_detail(
    request: Request,
    project_id: uuid.UUID,
    page: Reader,
    session: SessionDep,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
) -> Response:
    """A project: its figures, what is filed under it, an edit form."""
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
            "errors": {},
            "values": {
                "name": project.name,
                "description": project.description,
                "tags": ", ".join(project.tags),
            },
        },
        page=page,
    )


@router.post("/projects/{project_id}")
async def edit_project(
    request: Request, project_id: uuid.UUID, page: Writer, session: SessionDep
) -> Response:
    """Save a project's name, description and tags."""
    values = _project_values(await request.form())
    service = ProjectService(session, page.ctx)
    try:
        await service.update(project_id, ProjectUpdate.model_validate(values))
    except (RaptorFlowError, ValidationError) as exc:
        await session.rollback()
        if isinstance(exc, RaptorFlowError) and exc.status == 404:
            raise
        project = await service.get(project_id)
        return render(
            request,
            "project.html",
            {
                "obj": project,
                "stats": await service.stats(project_id),
                "objects": [],
                "next_cursor": None,
                "errors": field_errors(exc),
                "values": {**values, "tags": ", ".join(values["tags"])},
            },
            page=page,
            status=exc.status if isinstance(exc, RaptorFlowError) else 422,
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
    form = await request.form()
    values = _form_values(form, spec.fields, partial=False)
    try:
        obj = await spec.service(session, page.ctx).create(spec.create.model_validate(values))
    except (RaptorFlowError, ValidationError) as exc:
        await session.rollback()
        shown = {f.name: form_text(form, f.name) for f in spec.fields}
        return render(
            request,
            "kind_list.html",
            _context_of(
                spec,
                page,
                None,
                items=[],
                next_cursor=None,
                q="",
                archived=False,
                errors=field_errors(exc),
                values=shown,
            ),
            page=page,
            status=exc.status if isinstance(exc, RaptorFlowError) else 422,
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
            values=values if values is not None else _field_values(obj, spec.fields),
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
    """Save an edit (PATCH semantics through the service)."""
    spec = _kind(kind)
    form = await request.form()
    values = _form_values(form, spec.fields, partial=True)
    try:
        await spec.service(session, page.ctx).update(object_id, spec.update.model_validate(values))
    except (RaptorFlowError, ValidationError) as exc:
        await session.rollback()
        if isinstance(exc, RaptorFlowError) and exc.status == 404:
            raise
        shown = {f.name: form_text(form, f.name) for f in spec.fields}
        return await _detail(
            request,
            spec,
            page,
            session,
            object_id,
            errors=field_errors(exc),
            values=shown,
            status=exc.status if isinstance(exc, RaptorFlowError) else 422,
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
