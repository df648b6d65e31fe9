"""HTTP routes of imports: JSON body or multipart upload → 202 with a job; state, list, cancel."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Request, Response
from pydantic import ValidationError
from starlette.datastructures import UploadFile as StarletteUpload

from raptorflow.accounts.schemas import Page
from raptorflow.auth.deps import require
from raptorflow.auth.permissions import Permission
from raptorflow.auth.principal import OrgContext
from raptorflow.kit.deps import SessionDep
from raptorflow.kit.errors import InvalidInput
from raptorflow.kit.pagination import CursorParam, LimitParam
from raptorflow.kit.web import ORJSONResponse
from raptorflow.sharing.imports.schemas import FORMATS, ImportIn, ImportOptions, ImportOut
from raptorflow.sharing.imports.service import CHUNK, MAX_UPLOAD, ImportService, view

router = APIRouter(prefix="/api/v1/imports", tags=["imports"])
# The largest request body these routes take (a file and its multipart framing).
MAX_BODY = MAX_UPLOAD + 64 * 1024
Reader = Annotated[OrgContext, require(Permission.intel_read)]
Writer = Annotated[OrgContext, require(Permission.intel_write)]
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "Not found (or not yours)"}}
ACCEPTED: dict[int | str, dict[str, Any]] = {
    202: {"model": ImportOut, "description": "Queued; follow `Location` (or GET /api/v1/imports/{id})"},
}


def _accepted(row: Any, job: Any) -> ORJSONResponse:
    return ORJSONResponse(view(row, job), status_code=202, headers={"Location": f"/api/v1/imports/{row.id}"})


async def _one(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def _upload(file: StarletteUpload) -> AsyncIterator[bytes]:
    while True:
        piece = await file.read(CHUNK)
        if not piece:
            return
        yield piece


def _inline(schema: Any, defs: dict[str, Any]) -> Any:
    """A JSON schema with its local `$defs` references replaced by the definitions (for openapi_extra)."""
    if isinstance(schema, dict):
        ref = schema.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            return _inline(defs[ref.rsplit("/", 1)[-1]], defs)
        return {k: _inline(v, defs) for k, v in schema.items() if k != "$defs"}
    if isinstance(schema, list):
        return [_inline(v, defs) for v in schema]
    return schema


_JSON_SCHEMA = ImportIn.model_json_schema()
_OPTIONS_SCHEMA = ImportOptions.model_json_schema()
_BODY = {
    "required": True,
    "content": {
        "application/json": {"schema": _inline(_JSON_SCHEMA, _JSON_SCHEMA.get("$defs", {}))},
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["file"],
                "properties": {
                    "file": {
                        "type": "string",
                        "format": "binary",
                        "description": "the file (a file part): STIX bundle, MISP event JSON, CSV or text",
                    },
                    "format": {
                        "type": "string",
                        "enum": list(FORMATS),
                        "description": "guessed when left out",
                    },
                    "options": {
                        **_inline(_OPTIONS_SCHEMA, _OPTIONS_SCHEMA.get("$defs", {})),
                        "description": "ImportOptions, a JSON part",
                    },
                },
                "additionalProperties": False,
            },
            # An object part is JSON (OpenAPI's default for objects in multipart), said explicitly.
            "encoding": {"options": {"contentType": "application/json"}},
        },
    },
}


def _field_error(exc: ValidationError, prefix: str) -> InvalidInput:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"])
    return InvalidInput(f"{prefix}.{where}" if where else prefix, str(first["msg"]))


@router.post(
    "",
    status_code=202,
    response_model=ImportOut,
    responses=ACCEPTED,
    openapi_extra={"requestBody": _BODY},
    summary="Import a file (multipart upload) or a JSON body",
)
async def create_import(request: Request, ctx: Writer, session: SessionDep) -> Response:
    """Multipart `file` (+ `format`, `options` JSON), or JSON `{format, content, ...options}`; runs as a job.

    Uploads are stored in the database in 1 MB chunks during the request, then ingested by a job.
    """
    service = ImportService(session, ctx)
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        form = await request.form(max_files=1, max_fields=10)
        unknown = sorted(set(form.keys()) - {"file", "format", "options"})
        if unknown:
            raise InvalidInput(unknown[0], "unknown form field (`file`, `format` and `options` are read)")
        file = form.get("file")
        if not isinstance(file, StarletteUpload):
            raise InvalidInput("file", "give the file to import as the multipart field `file`")
        fmt = form.get("format")
        if fmt is not None and fmt not in FORMATS:
            raise InvalidInput("format", f"one of {', '.join(FORMATS)}")
        raw_options = form.get("options")
        try:
            options = (
                ImportOptions.model_validate_json(raw_options)
                if isinstance(raw_options, str)
                else ImportOptions()
            )
        except ValidationError as exc:
            raise _field_error(exc, "options") from None
        row, job = await service.create(
            fmt if isinstance(fmt, str) else None, file.filename or "", options, _upload(file)
        )
        return _accepted(row, job)
    try:
        body = ImportIn.model_validate_json(await request.body())
    except ValidationError as exc:
        raise _field_error(exc, "body") from None
    content = body.content
    data = content.encode() if isinstance(content, str) else orjson.dumps(content)
    options = ImportOptions.model_validate(body.model_dump(include=set(ImportOptions.model_fields)))
    row, job = await service.create(body.format, body.filename, options, _one(data))
    return _accepted(row, job)


@router.get("", response_model=Page[ImportOut], summary="List imports (feed runs included)")
async def list_imports(
    ctx: Reader,
    session: SessionDep,
    feed_id: uuid.UUID | None = None,
    limit: LimitParam = 50,
    cursor: CursorParam = None,
) -> Response:
    """Newest first."""
    rows, nxt = await ImportService(session, ctx).page(limit, cursor, feed_id)
    return ORJSONResponse({"items": [view(r, j) for r, j in rows], "next_cursor": nxt})


@router.get(
    "/{import_id}", response_model=ImportOut, responses=NOT_FOUND, summary="An import's state and counts"
)
async def get_import(import_id: uuid.UUID, ctx: Reader, session: SessionDep) -> Response:
    """State, total, processed, created, merged, rejected and the first 100 rejection reasons."""
    row, job = await ImportService(session, ctx).get(import_id)
    return ORJSONResponse(view(row, job))


@router.post(
    "/{import_id}/cancel",
    response_model=ImportOut,
    responses=NOT_FOUND,
    summary="Cancel an import (idempotent: one already over is answered as it is)",
)
async def cancel_import(import_id: uuid.UUID, ctx: Writer, session: SessionDep) -> Response:
    """Queued imports stop at once; running ones at their next batch (PostgreSQL: nothing is kept)."""
    row, job = await ImportService(session, ctx).cancel(import_id)
    return ORJSONResponse(view(row, job))
