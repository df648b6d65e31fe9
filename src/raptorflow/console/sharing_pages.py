"""Console pages for sharing: imports with a live progress bar, exports as downloads."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.datastructures import UploadFile

from raptorflow.auth.permissions import Permission
from raptorflow.console.forms import FormInvalid, read_form
from raptorflow.console.web import (
    ConsoleRoute,
    OrgPage,
    field_errors,
    form_text,
    org_page,
    redirect,
    render,
)
from raptorflow.intel.common import TLP, Classification
from raptorflow.intel.projects.service import ProjectService
from raptorflow.kit.db import utcnow
from raptorflow.kit.deps import SessionDep
from raptorflow.kit.errors import NotFound, RaptorFlowError
from raptorflow.kit.streaming import ClosingStreamingResponse
from raptorflow.sharing.exports import service as exports
from raptorflow.sharing.exports.schemas import export_filters
from raptorflow.sharing.feeds.schemas import FeedCreate
from raptorflow.sharing.feeds.service import FeedService, feed_out
from raptorflow.sharing.imports.presets import PRESETS
from raptorflow.sharing.imports.schemas import FORMATS as IMPORT_FORMATS
from raptorflow.sharing.imports.schemas import CsvOptions, ImportOptions
from raptorflow.sharing.imports.service import ImportService, view

router = APIRouter(prefix="/o/{org_id}", route_class=ConsoleRoute, include_in_schema=False)
Reader = Annotated[OrgPage, org_page(Permission.intel_read)]
Writer = Annotated[OrgPage, org_page(Permission.intel_write)]
FINAL = ("succeeded", "failed", "cancelled")
CHUNK = 1024 * 1024
FEED_KINDS = ("taxii", "misp", "csv", "text")
EXPORTS = {
    "csv": ("CSV (every field)", "text/csv", "indicators.csv"),
    "txt": ("Blocklist (one value per line)", "text/plain; charset=utf-8", "indicators.txt"),
    "stix": ("STIX 2.1 bundle", "application/json", "indicators.stix.json"),
    "misp": ("MISP event (JSON)", "application/json", "indicators.misp.json"),
    "suricata": ("Suricata rules", "text/plain; charset=utf-8", "indicators.suricata.rules"),
    "snort": ("Snort rules", "text/plain; charset=utf-8", "indicators.snort.rules"),
}


async def _chunks(file: UploadFile) -> AsyncIterator[bytes]:
    while True:
        piece = await file.read(CHUNK)
        if not piece:
            return
        yield piece


async def _imports_page(
    request: Request,
    page: OrgPage,
    session: Any,
    cursor: str | None = None,
    *,
    errors: dict[str, str] | None = None,
    values: dict[str, Any] | None = None,
    status: int = 200,
) -> Response:
    rows, nxt = await ImportService(session, page.ctx).page(50, cursor)
    projects, _ = await ProjectService(session, page.ctx).page(
        archived=False, tag=None, q=None, limit=200, cursor=None
    )
    return render(
        request,
        "imports.html",
        {
            "items": [view(r, j) for r, j in rows],
            "next_cursor": nxt,
            "formats": IMPORT_FORMATS,
            "presets": [(p.name, p.source) for p in PRESETS.values()],
            "csv_columns": CSV_COLUMNS,
            "projects": projects,
            "classifications": [c.value for c in Classification],
            "tlps": [t.value for t in TLP],
            "errors": errors or {},
            "values": values or {},
        },
        page=page,
        status=status,
    )


@router.get("/imports")
async def imports(
    request: Request,
    page: Reader,
    session: SessionDep,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
) -> Response:
    """Imports and feed runs, newest first; an upload form for editors."""
    return await _imports_page(request, page, session, cursor)


IMPORT_FIELDS = ("project_id", "classification", "tlp", "tags", "source", "preset")
# The column mapping of a generic CSV (form controls `csv_<field>`), label per field.
CSV_COLUMNS = (
    ("value_column", "Value"),
    ("type_column", "Type"),
    ("tags_column", "Tag list"),
    ("description_column", "Description"),
    ("confidence_column", "Confidence"),
    ("first_seen_column", "First seen"),
    ("last_seen_column", "Last seen"),
)


def _import_errors(exc: RaptorFlowError) -> dict[str, str]:
    """Form errors of an import; a column mapping's field (`csv.value_column`) goes to its own control."""
    errors = field_errors(exc)
    for item in exc.errors or []:
        name = str(item.get("field", ""))
        if name.startswith("csv."):
            errors.pop("csv", None)
            errors["csv_" + name.removeprefix("csv.")] = str(item.get("message", ""))
    return errors


@router.post("/imports")
async def upload(request: Request, page: Writer, session: SessionDep) -> Response:
    """Store an uploaded file and queue its import (the same service as the API)."""
    form = await request.form()
    file = form.get("file")
    data = read_form(form, ImportOptions, IMPORT_FIELDS)
    columns = read_form(form, CsvOptions, [*(name for name, _ in CSV_COLUMNS), "delimiter"], prefix="csv_")
    # Its controls are named csv_<field> already (FormData.nest would prefix them again).
    if columns.values:
        data.values["csv"] = columns.values
    data.shown.update(columns.shown)
    data.errors.update(columns.errors)
    fmt = form_text(form, "format") or None
    if fmt is not None and fmt not in IMPORT_FORMATS:
        data.errors["format"] = f"one of {', '.join(IMPORT_FORMATS)}"
    try:
        if not isinstance(file, UploadFile) or not file.filename:
            raise FormInvalid({**data.errors, "file": "choose a file to import"})
        options = data.build(ImportOptions)
        row, _job = await ImportService(session, page.ctx).create(fmt, file.filename, options, _chunks(file))
    except RaptorFlowError as exc:
        await session.rollback()
        return await _imports_page(
            request,
            page,
            session,
            errors=_import_errors(exc),
            values={**data.shown, "format": fmt or ""},
            status=exc.status,
        )
    return redirect(page.url(f"/imports/{row.id}"))


@router.get("/imports/{import_id}")
async def import_detail(
    request: Request, import_id: uuid.UUID, page: Reader, session: SessionDep
) -> Response:
    """One import with its progress (the page reloads itself until the import is finished)."""
    row, job = await ImportService(session, page.ctx).get(import_id)
    item = view(row, job)
    size = max(int(item["size_bytes"] or 0), 1)
    done = item["status"] in FINAL
    percent = (
        100 if item["status"] == "succeeded" else min(99, int(100 * int(item["bytes_read"] or 0) / size))
    )
    return render(request, "import.html", {"item": item, "percent": percent, "done": done}, page=page)


@router.get("/exports")
async def exports_page(request: Request, page: Reader, session: SessionDep) -> Response:
    """Download the org's indicators as files, filtered like the indicator list."""
    projects, _ = await ProjectService(session, page.ctx).page(
        archived=False, tag=None, q=None, limit=200, cursor=None
    )
    return render(request, "exports.html", {"formats": EXPORTS, "projects": projects}, page=page)


class ExportForm(BaseModel):
    """The export page's filters (blank fields mean "any")."""

    model_config = ConfigDict(extra="forbid")

    type: str | None = Field(default=None, max_length=32)
    min_score: int | None = Field(default=None, ge=0, le=100)
    project_id: uuid.UUID | None = None


EXPORT_FIELDS = ("type", "min_score", "project_id")


@router.get("/exports/download/{fmt}")
async def export_download(request: Request, fmt: str, page: Reader) -> Response:
    """The file, streamed (same streams and filters as GET /api/v1/exports/...)."""
    found = EXPORTS.get(fmt)
    if found is None:
        raise NotFound()
    chosen = read_form(request.query_params, ExportForm, EXPORT_FIELDS).build(ExportForm)
    filters = export_filters(type=chosen.type, min_score=chosen.min_score, project_id=chosen.project_id)
    _label, media_type, filename = found
    chunks = exports.stream_for(
        fmt, request.app.state.session_factory, page.org_id, filters, org=page.org_name, now=utcnow()
    )
    return ClosingStreamingResponse(
        chunks,
        media_type=media_type,
        headers={"Content-Disposition": f'attachment; filename="{filename}"', "Cache-Control": "no-store"},
    )


async def _feeds_page(
    request: Request,
    page: OrgPage,
    session: Any,
    *,
    errors: dict[str, str] | None = None,
    values: dict[str, Any] | None = None,
    status: int = 200,
) -> Response:
    rows, _ = await FeedService(session, page.ctx, request.app.state.settings).page(200, None)
    return render(
        request,
        "feeds.html",
        {
            "feeds": [feed_out(f) for f in rows],
            "kinds": FEED_KINDS,
            "errors": errors or {},
            "values": values or {},
        },
        page=page,
        status=status,
    )


@router.get("/feeds")
async def feeds(request: Request, page: Reader, session: SessionDep) -> Response:
    """Subscribed feeds with their last run; add and run-now for editors."""
    return await _feeds_page(request, page, session)


FEED_FIELDS = ("name", "kind", "url", "username", "password", "schedule_minutes", "tags")


@router.post("/feeds")
async def add_feed(request: Request, page: Writer, session: SessionDep) -> Response:
    """Subscribe to a feed (the service checks the URL, name and project)."""
    data = read_form(await request.form(), FeedCreate, FEED_FIELDS)
    try:
        await FeedService(session, page.ctx, request.app.state.settings).create(data.build(FeedCreate))
    except RaptorFlowError as exc:
        await session.rollback()
        # The password is never sent back into the page.
        shown = {k: v for k, v in data.shown.items() if k != "password"}
        return await _feeds_page(
            request, page, session, errors=field_errors(exc), values=shown, status=exc.status
        )
    return redirect(page.url("/feeds"))


@router.post("/feeds/{feed_id}/run")
async def run_feed(request: Request, feed_id: uuid.UUID, page: Writer, session: SessionDep) -> Response:
    """Pull now; the browser follows the run's progress page."""
    row = await FeedService(session, page.ctx, request.app.state.settings).run(feed_id)
    return redirect(page.url(f"/imports/{row.id}"))
