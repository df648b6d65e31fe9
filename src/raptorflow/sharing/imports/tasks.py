"""Background jobs of imports."""

from __future__ import annotations

import uuid
from typing import Any

from raptorflow.kit.jobs import JobContext, task
from raptorflow.sharing.imports.service import TASK, run_import


@task(TASK)
async def run_import_job(ctx: JobContext, payload: dict[str, Any]) -> dict[str, Any]:
    """Ingest one uploaded import (csv, text, misp, stix)."""
    return await run_import(ctx, uuid.UUID(str(payload["import_id"])))
