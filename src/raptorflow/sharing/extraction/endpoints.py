"""HTTP routes of IOC extraction: text or HTML in the body, or an uploaded PDF/HTML/text file."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Request
from pydantic import ValidationError
from starlette.datastructures import UploadFile

from raptorflow.auth.deps import require
from raptorflow.auth.permissions import Permission
from raptorflow.auth.principal import OrgContext
from raptorflow.intel.indicators.schemas import BulkOut
from raptorflow.kit.deps import SessionDep
from raptorflow.kit.errors import InvalidInput, RaptorFlowError
from raptorflow.sharing.extraction.schemas import ConfirmIn, ExtractIn, ExtractOut
from raptorflow.sharing.extraction.service import ExtractionService, text_from_html, text_from_upload

router = APIRouter(prefix="/api/v1/extract", tags=["extraction"])
Reader = Annotated[OrgContext, require(Permission.intel_read)]
Writer = Annotated[OrgContext, require(Permission.intel_write)]
MAX_FILE = 20 * 1024 * 1024
# The largest request body these routes take (a file and its multipart framing).
MAX_BODY = MAX_FILE + 64 * 1024


_BODY = {
    "required": True,
    "content": {
        "application/json": {"schema": ExtractIn.model_json_schema()},
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["file"],
                "properties": {
                    "file": {
                        "type": "string",
                        "format": "binary",
                        "description": "the report: PDF, HTML or text (a file part)",
                    }
                },
                "additionalProperties": False,
            }
        },
    },
}


@router.post(
    "",
    response_model=ExtractOut,
    openapi_extra={"requestBody": _BODY},
    summary="Find candidate IOCs in pasted text or HTML (JSON), or an uploaded PDF/HTML/text (multipart)",
)
async def extract(request: Request, ctx: Reader, session: SessionDep) -> ExtractOut:
    """Candidates (defanged forms included) with normalized value, snippet and whether the org knows them."""
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        form = await request.form(max_files=1, max_fields=5)
        unknown = sorted(set(form.keys()) - {"file"})
        if unknown:
            raise InvalidInput(unknown[0], "unknown form field (only `file` is read)")
        file = form.get("file")
        if not isinstance(file, UploadFile):
            raise InvalidInput("file", "give the report as the multipart field `file`")
        data = await file.read(MAX_FILE + 1)
        if len(data) > MAX_FILE:
            raise RaptorFlowError(f"The file is larger than {MAX_FILE // (1024 * 1024)} MB.", status=413)
        if not data:
            raise InvalidInput("file", "the file is empty")
        text, _kind = await asyncio.to_thread(
            text_from_upload, data, file.filename or "", (file.content_type or "").lower()
        )
    else:
        try:
            body = ExtractIn.model_validate_json(await request.body())
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise InvalidInput(f"body.{where}" if where else "body", str(first["msg"])) from None
        text = await asyncio.to_thread(text_from_html, body.text) if body.format == "html" else body.text
    return await ExtractionService(session, ctx).extract(text)


@router.post("/confirm", summary="Store a selection of candidates as indicators (optionally in a project)")
async def confirm(body: ConfirmIn, ctx: Writer, session: SessionDep) -> BulkOut:
    """Per-item results like POST /api/v1/indicators/bulk (same validation and merge rules)."""
    return await ExtractionService(session, ctx).confirm(body)
