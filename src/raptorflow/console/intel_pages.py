"""Console pages of an org: dashboard and indicators."""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import timedelta
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from raptorflow.auth.permissions import Permission
from raptorflow.console.charts import SCORE_BANDS, bar_chart, graph_layout, per_day
from raptorflow.console.forms import Control, choices, read_controls, read_form, shown_values
from raptorflow.console.repository import ConsoleRepository
from raptorflow.console.web import (
    ConsoleRoute,
    OrgPage,
    field_errors,
    form_text,
    org_page,
    redirect,
    render,
)
from raptorflow.intel.actors.service import ThreatActorService
from raptorflow.intel.campaigns.service import CampaignService
from raptorflow.intel.context_base import ContextFilters
from raptorflow.intel.indicators.schemas import IndicatorCreate, IndicatorUpdate
from raptorflow.intel.indicators.service import IndicatorService, to_out
from raptorflow.intel.projects.service import ProjectService
from raptorflow.intel.relationships import service as relationships
from raptorflow.intel.sightings.service import SightingService
from raptorflow.kit.db import utcnow
from raptorflow.kit.deps import SessionDep
from raptorflow.kit.errors import RaptorFlowError
from raptorflow.kit.tenancy import bind_org
from raptorflow.sharing.extraction.schemas import MAX_TEXT, ConfirmIn, ExtractIn
from raptorflow.sharing.extraction.service import ExtractionService, text_from_html
from raptorflow.sharing.imports.service import ImportService, view
from raptorflow.sharing.stix import render as stix_render
from raptorflow.sharing.stix import service as stix_service
from raptorflow.sharing.stix.service import Selection

router = APIRouter(prefix="/o/{org_id}", route_class=ConsoleRoute, include_in_schema=False)
Reader = Annotated[OrgPage, org_page(Permission.intel_read)]
Writer = Annotated[OrgPage, org_page(Permission.intel_write)]
PAGE_SIZE = 50
# From this many indicators the dashboard figures are computed in the background (seconds at 1M;
# at 10,000 the inline figures already took 90 ms p50 and 350 ms p95 in `bench/console.py --quick`).
BIG_ORG = 5_000
TYPES = (
    "ipv4",
    "ipv6",
    "cidr",
    "domain",
    "url",
    "email",
    "md5",
    "sha1",
    "sha256",
    "sha512",
    "asn",
    "cve",
    "filename",
    "mutex",
    "registry-key",
    "user-agent",
    "btc-address",
)
CLASSIFICATIONS = ("malicious", "suspicious", "benign", "unknown")
# The orders the console offers, each served by an index of (org_id, ...) so a page of a million
# indicators never sorts the table ("type,value" follows the unique (org_id, type, value) index).
SORTS = (
    ("-created_at", "newest"),
    ("created_at", "oldest"),
    ("-last_seen", "last seen"),
    ("-score", "score ↓"),
    ("score", "score ↑"),
    ("type,value", "type, then value A to Z"),
)
TLPS = ("clear", "green", "amber", "amber+strict", "red")


@router.get("/")
async def dashboard(request: Request, page: Reader, session: SessionDep) -> Response:
    """Counts, additions per day, score distribution, recent actors and their techniques."""

    since = utcnow() - timedelta(days=30)

    async def now() -> dict[str, Any]:
        return await ConsoleRepository(session, page.org_id).dashboard_stats(since)

    async def later() -> dict[str, Any]:
        async with request.app.state.session_factory() as own:
            await bind_org(own, page.org_id)
            return await ConsoleRepository(own, page.org_id).dashboard_stats(since, background=True)

    async def big() -> bool:
        return await ConsoleRepository(session, page.org_id).indicators_at_least(BIG_ORG)

    stats, age = await request.app.state.console_stats.get(page.org_id, now, later, big)
    if stats is None:
        return render(request, "dashboard_pending.html", {"big": BIG_ORG}, page=page)
    days = bar_chart(per_day(stats["added_per_day"], utcnow().date()), every=5)
    bands = bar_chart([(b, stats["by_score_band"].get(b, 0)) for b in SCORE_BANDS], width=280)
    actors, _ = await ThreatActorService(session, page.ctx).page(
        ContextFilters(), sort="-updated_at", cursor=None, limit=100
    )
    campaigns, _ = await CampaignService(session, page.ctx).page(
        ContextFilters(), sort="-updated_at", cursor=None, limit=100
    )
    techniques = Counter(
        t for group in (actors, campaigns) for obj in group for t in (obj.attack_techniques or [])
    )
    return render(
        request,
        "dashboard.html",
        {
            "stats": stats,
            "days": days,
            "bands": bands,
            "actors": actors[:8],
            "techniques": techniques.most_common(10),
            "age": age,
            "imports": [view(r, j) for r, j in (await ImportService(session, page.ctx).page(5, None))[0]],
        },
        page=page,
    )


def _filters(params: dict[str, Any]) -> dict[str, Any]:
    def _int(name: str) -> int | None:
        raw = params.get(name)
        return int(raw) if raw not in (None, "") and str(raw).isdigit() and int(raw) <= 100 else None

    project = params.get("project_id") or None
    try:
        project_id = uuid.UUID(project) if project else None
    except ValueError:
        project_id = None
    fp = params.get("false_positive")
    return {
        "type": params.get("type") or None if params.get("type") in TYPES else None,
        "classification": params.get("classification")
        if params.get("classification") in CLASSIFICATIONS
        else None,
        "tag": (params.get("tag") or "").strip().lower()[:64] or None,
        "project_id": project_id,
        "workspace_id": None,
        "tlp": params.get("tlp") if params.get("tlp") in TLPS else None,
        "min_score": _int("min_score"),
        "max_score": _int("max_score"),
        "first_seen_after": None,
        "first_seen_before": None,
        "last_seen_after": None,
        "last_seen_before": None,
        "false_positive": {"yes": True, "no": False}.get(fp or ""),
        "archived": params.get("archived") == "yes",
        "expired": None,
        "source": (params.get("source") or "").strip()[:200] or None,
    }


QUICK_ADD = ("value", "classification", "score", "tags")
EDIT = (
    Control("classification", "Classification", "select", choices(CLASSIFICATIONS), blank=False),
    Control("score", "Score (0 to 100)", "number", minimum=0, maximum=100, required=True),
    Control("confidence", "Confidence (0 to 100)", "number", minimum=0, maximum=100, required=True),
    Control("tlp", "TLP", "select", choices(TLPS), blank=False),
    Control("tags", "Tags (comma-separated)", "list"),
    Control("attack_techniques", "ATT&CK techniques (T1059, …)", "list"),
    Control("valid_from", "Valid from (UTC)", "date"),
    Control("valid_until", "Valid until (UTC)", "date"),
    Control("description", "Description", "textarea"),
)


async def _indicators_page(
    request: Request,
    page: OrgPage,
    session: Any,
    *,
    q: str = "",
    sort: str = "-created_at",
    cursor: str | None = None,
    errors: dict[str, str] | None = None,
    values: dict[str, Any] | None = None,
    status: int = 200,
) -> Response:
    service = IndicatorService(session, page.ctx)
    params = dict(request.query_params)
    if sort not in dict(SORTS):
        sort = "-created_at"
    if q.strip():
        rows, nxt = await service.search(q, PAGE_SIZE, cursor)
    else:
        rows, nxt = await service.list_page(_filters(params), sort, PAGE_SIZE, cursor)
    now = utcnow()
    half_lives = await service.half_lives()
    projects, _ = await ProjectService(session, page.ctx).page(
        archived=False, tag=None, q=None, limit=100, cursor=None
    )
    next_params = {k: v for k, v in params.items() if k != "cursor"}
    return render(
        request,
        "indicators.html",
        {
            "items": [to_out(r, now, half_lives) for r in rows],
            "next_cursor": nxt,
            "params": params,
            "next_params": next_params,
            "q": q,
            "sort": sort,
            "sorts": SORTS,
            "types": TYPES,
            "classifications": CLASSIFICATIONS,
            "tlps": TLPS,
            "projects": projects,
            "errors": errors or {},
            "values": values or {},
        },
        page=page,
        status=status,
    )


@router.get("/indicators")
async def indicators(
    request: Request,
    page: Reader,
    session: SessionDep,
    q: Annotated[str, Query(max_length=200)] = "",
    sort: Annotated[str, Query(max_length=40)] = "-created_at",
    cursor: Annotated[str | None, Query(max_length=512)] = None,
) -> Response:
    """Search or filter, sort and page through indicators (no total count: keyset paging)."""
    return await _indicators_page(request, page, session, q=q, sort=sort, cursor=cursor)


@router.post("/indicators")
async def quick_add(request: Request, page: Writer, session: SessionDep) -> Response:
    """Quick add: one value (type detected), optional classification, score and tags."""
    data = read_form(await request.form(), IndicatorCreate, QUICK_ADD)
    try:
        row, _created = await IndicatorService(session, page.ctx).create(data.build(IndicatorCreate))
    except RaptorFlowError as exc:
        await session.rollback()
        # The list as it was, with the form as the user filled it in and the field at fault named.
        return await _indicators_page(
            request, page, session, errors=field_errors(exc), values=data.shown, status=exc.status
        )
    return redirect(page.url(f"/indicators/{row.id}"))


async def _paste_page(
    request: Request,
    page: OrgPage,
    session: Any,
    *,
    text: str = "",
    found: Any = None,
    errors: dict[str, str] | None = None,
    result: Any = None,
    status: int = 200,
) -> Response:
    projects, _ = await ProjectService(session, page.ctx).page(
        archived=False, tag=None, q=None, limit=200, cursor=None
    )
    return render(
        request,
        "paste.html",
        {
            "text": text,
            "found": found,
            "errors": errors or {},
            "result": result,
            "projects": projects,
            "classifications": CLASSIFICATIONS,
            "tlps": TLPS,
        },
        page=page,
        status=status,
    )


@router.get("/indicators/paste")
async def paste_form(request: Request, page: Writer, session: SessionDep) -> Response:
    """Bulk paste: free text in, candidate indicators out."""
    return await _paste_page(request, page, session)


@router.post("/indicators/paste")
async def paste_preview(request: Request, page: Writer, session: SessionDep) -> Response:
    """The extraction preview: every candidate with its snippet, new ones pre-checked."""
    data = read_form(await request.form(), ExtractIn, ("text", "format"), text={"text"})
    try:
        body = data.build(ExtractIn)
        source = text_from_html(body.text) if body.format == "html" else body.text
        found = await ExtractionService(session, page.ctx).extract(source)
    except RaptorFlowError as exc:
        await session.rollback()
        return await _paste_page(
            request,
            page,
            session,
            text=str(data.shown.get("text", ""))[:MAX_TEXT],
            errors=field_errors(exc),
            status=exc.status,
        )
    return await _paste_page(request, page, session, text=body.text, found=found)


@router.post("/indicators/paste/confirm")
async def paste_confirm(request: Request, page: Writer, session: SessionDep) -> Response:
    """Store the checked candidates (same bulk path and merge rules as the API), optionally in a project."""
    form = await request.form()
    data = read_form(form, ConfirmIn, ("project_id", "classification", "tlp", "tags", "source"))
    # Each checked box carries "type:value" of one candidate the preview offered.
    items = [str(raw).partition(":") for raw in form.getlist("item")]
    data.values["items"] = [{"type": kind or None, "value": value} for kind, _, value in items]
    if not items:
        data.errors["items"] = "check at least one candidate"
    try:
        result = await ExtractionService(session, page.ctx).confirm(data.build(ConfirmIn))
    except RaptorFlowError as exc:
        await session.rollback()
        return await _paste_page(request, page, session, errors=field_errors(exc), status=exc.status)
    return await _paste_page(request, page, session, result=result)


async def _edit_controls(session: Any, page: OrgPage) -> tuple[Control, ...]:
    projects, _ = await ProjectService(session, page.ctx).page(
        archived=False, tag=None, q=None, limit=200, cursor=None
    )
    options = tuple((str(p.id), p.name) for p in projects)
    return (Control("project_id", "Project", "select", options), *EDIT)


async def _indicator_page(
    request: Request,
    page: OrgPage,
    session: Any,
    indicator_id: uuid.UUID,
    *,
    errors: dict[str, str] | None = None,
    values: dict[str, Any] | None = None,
    status: int = 200,
) -> Response:
    service = IndicatorService(session, page.ctx)
    row = await service.get(indicator_id)
    item = to_out(row, utcnow(), await service.half_lives())
    history, _ = await service.history(indicator_id, 50, None)
    sightings = await SightingService(session, page.ctx).list(indicator_id, None, 20)
    graph = await relationships.neighbours(session, page.org_id, indicator_id, 1)
    nodes, edges = graph_layout(indicator_id, graph.nodes, [(e[1], e[2], e[3]) for e in graph.edges.values()])
    stix_id = stix_render.object_id("indicator", row.id, row.stix_id)
    stix_objects = [
        obj
        async for batch in stix_service.export_objects(
            session, page.org_id, Selection(indicators={"ids": [row.id]})
        )
        for obj in batch
        if obj.get("id") == stix_id
    ]
    controls = await _edit_controls(session, page) if page.can(Permission.intel_write) else ()
    return render(
        request,
        "indicator.html",
        {
            "item": item,
            "history": history,
            "sightings": sightings,
            "nodes": nodes,
            "edges": edges,
            "truncated": graph.truncated,
            "stix": orjson.dumps(stix_objects[0], option=orjson.OPT_INDENT_2).decode()
            if stix_objects
            else None,
            "controls": controls,
            "errors": errors or {},
            "values": values if values is not None else shown_values(item, [c.name for c in controls]),
        },
        page=page,
        status=status,
    )


@router.get("/indicators/{indicator_id}")
async def indicator_detail(
    request: Request, indicator_id: uuid.UUID, page: Reader, session: SessionDep
) -> Response:
    """An indicator: effective score with its breakdown, history, sightings, relationships, ATT&CK."""
    return await _indicator_page(request, page, session, indicator_id)


@router.post("/indicators/{indicator_id}")
async def edit_indicator(
    request: Request, indicator_id: uuid.UUID, page: Writer, session: SessionDep
) -> Response:
    """Save the analyst fields the user changed (same rules and history as PATCH /indicators/{id})."""
    service = IndicatorService(session, page.ctx)
    controls = await _edit_controls(session, page)
    current = shown_values(to_out(await service.get(indicator_id), utcnow(), {}), [c.name for c in controls])
    data = read_controls(await request.form(), IndicatorUpdate, controls, edit=True)
    try:
        await service.update(indicator_id, data.changed_from(current).build(IndicatorUpdate))
    except RaptorFlowError as exc:
        await session.rollback()
        return await _indicator_page(
            request,
            page,
            session,
            indicator_id,
            errors=field_errors(exc),
            values=data.shown,
            status=exc.status,
        )
    return redirect(page.url(f"/indicators/{indicator_id}"))


@router.post("/indicators/{indicator_id}/false-positive")
async def mark_false_positive(
    request: Request, indicator_id: uuid.UUID, page: Writer, session: SessionDep
) -> Response:
    """Mark (with a reason) or clear a false positive."""
    form = await request.form()
    service = IndicatorService(session, page.ctx)
    if form_text(form, "clear") == "1":
        await service.set_false_positive(indicator_id, None)
    else:
        await service.set_false_positive(
            indicator_id, form_text(form, "reason")[:500] or "marked in the console"
        )
    return redirect(page.url(f"/indicators/{indicator_id}"))


@router.post("/indicators/{indicator_id}/archive")
async def archive(request: Request, indicator_id: uuid.UUID, page: Writer, session: SessionDep) -> Response:
    """Archive or restore (editors their own, admins any: the service's rule)."""
    form = await request.form()
    await IndicatorService(session, page.ctx).set_archived(indicator_id, form_text(form, "restore") != "1")
    return redirect(page.url(f"/indicators/{indicator_id}"))
