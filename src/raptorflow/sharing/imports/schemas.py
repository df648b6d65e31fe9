"""Request and response bodies of imports."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from raptorflow.accounts.schemas import Input
from raptorflow.intel.common import TLP, Classification, Tag
from raptorflow.sharing.imports.presets import PresetName

FORMATS = ("stix", "misp", "csv", "text")
Format = Literal["stix", "misp", "csv", "text"]
Column = str | int


class CsvOptions(Input):
    """Which columns hold what (header names, or 0-based indexes); guessed from the header when left out."""

    value_column: Column | None = None
    type_column: Column | None = None
    tags_column: Column | None = None
    description_column: Column | None = None
    confidence_column: Column | None = None
    score_column: Column | None = None
    first_seen_column: Column | None = None
    last_seen_column: Column | None = None
    delimiter: str = Field(default=",", min_length=1, max_length=1)
    has_header: bool | None = Field(default=None, description="guessed from the first row when null")
    comment_prefix: str = Field(default="#", max_length=4)


class ImportOptions(Input):
    """Where imported indicators go and what they get when the file does not say."""

    project_id: uuid.UUID | None = None
    tags: list[Tag] = Field(default_factory=list, max_length=50)
    tlp: TLP | None = None
    confidence: int | None = Field(default=None, ge=0, le=100)
    score: int | None = Field(default=None, ge=0, le=100)
    classification: Classification | None = None
    source: str | None = Field(default=None, min_length=1, max_length=200)
    type: str | None = Field(default=None, max_length=32, description="type of every value (csv/text)")
    preset: PresetName | None = Field(
        default=None,
        description="a published CSV layout (abuse.ch URLhaus, ThreatFox, Feodo Tracker); recognized from "
        "the header when left out and no csv columns are given",
    )
    csv: CsvOptions | None = None


class ImportIn(ImportOptions):
    """An import whose content is in the JSON body: text for csv/text, a JSON document for stix/misp."""

    format: Format
    content: str | dict[str, Any] | list[Any] = Field(description="the file's text, or the STIX/MISP JSON")
    filename: str = Field(default="", max_length=300)


class Rejected(BaseModel):
    """One input row that was not imported."""

    line: int
    value: str
    reason: str


class ImportOut(BaseModel):
    """An import's state and counts (live while it runs)."""

    id: uuid.UUID
    job_id: uuid.UUID | None
    feed_id: uuid.UUID | None
    format: str
    filename: str
    size_bytes: int
    status: str
    total: int | None
    processed: int
    bytes_read: int
    created: int
    merged: int
    rejected: int
    rejections: list[Rejected]
    error: str | None
    options: dict[str, Any]
    created_by: uuid.UUID | None
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None
