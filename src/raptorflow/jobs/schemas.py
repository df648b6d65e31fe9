"""Bodies of the jobs API."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel


class JobProgress(BaseModel):
    """How far a job is: items processed, the total when known, and named counts."""

    processed: int
    total: int | None
    counts: dict[str, int]


class JobOut(BaseModel):
    """A background job and its outcome."""

    id: uuid.UUID
    kind: str
    status: str
    attempts: int
    max_attempts: int
    last_error: str | None
    progress: JobProgress
    result: dict[str, Any] | None
    cancel_requested: bool
    created_by: uuid.UUID | None
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    run_after: datetime | None
