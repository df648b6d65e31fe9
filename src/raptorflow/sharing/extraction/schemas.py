"""Request and response bodies of IOC extraction."""

from __future__ import annotations

import uuid
from typing import Literal

from pydantic import BaseModel, Field

from raptorflow.accounts.schemas import Input
from raptorflow.intel.common import TLP, Classification, Tag

MAX_TEXT = 2_000_000


class ExtractIn(Input):
    """Pasted report text or HTML."""

    text: str = Field(min_length=1, max_length=MAX_TEXT)
    format: Literal["text", "html"] = Field(
        default="text", description="`html` strips tags, scripts and styles"
    )


class Candidate(BaseModel):
    """One IOC found in the text."""

    type: str
    value: str = Field(description="normalized (refanged) value, as it would be stored")
    raw: str = Field(description="the text as written, e.g. `evil[.]com`")
    defanged: bool
    snippet: str = Field(description="the text around the first occurrence")
    occurrences: int
    known: bool = Field(description="the organization already has this indicator")
    indicator_id: uuid.UUID | None


class ExtractOut(BaseModel):
    """Candidates in order of first appearance, and what was filtered out as a likely false positive."""

    candidates: list[Candidate]
    filtered: list[dict[str, str]]
    characters: int


class ConfirmItem(Input):
    """A candidate the analyst keeps."""

    value: str = Field(min_length=1, max_length=2048)
    type: str | None = Field(default=None, max_length=32)


class ConfirmIn(Input):
    """The selection to store, with what to set on every indicator."""

    items: list[ConfirmItem] = Field(min_length=1, max_length=1000)
    project_id: uuid.UUID | None = None
    tags: list[Tag] = Field(default_factory=list, max_length=50)
    tlp: TLP | None = None
    confidence: int | None = Field(default=None, ge=0, le=100)
    classification: Classification | None = None
    source: str | None = Field(default=None, min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=10_000)
