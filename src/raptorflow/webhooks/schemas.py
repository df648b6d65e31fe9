"""Bodies of the webhooks API."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, ClassVar

from pydantic import BaseModel, Field

from raptorflow.accounts.schemas import Input

EVENTS = (
    "indicator.created",
    "indicator.updated",
    "indicator.expired",
    "sighting.added",
    "import.finished",
    "feed.failed",
)
TEST_EVENT = "webhook.test"


class WebhookCreate(Input):
    """A new subscription."""

    url: str = Field(min_length=8, max_length=2000)
    events: list[str] = Field(min_length=1, max_length=len(EVENTS))
    min_score: int = Field(default=0, ge=0, le=100)
    description: str = Field(default="", max_length=2000)
    active: bool = True


class WebhookUpdate(Input):
    """Subscription fields to change."""

    not_null: ClassVar[frozenset[str]] = frozenset({"url", "events", "min_score", "description", "active"})
    url: str | None = Field(default=None, min_length=8, max_length=2000)
    events: list[str] | None = Field(default=None, min_length=1, max_length=len(EVENTS))
    min_score: int | None = Field(default=None, ge=0, le=100)
    description: str | None = Field(default=None, max_length=2000)
    active: bool | None = None


class WebhookOut(BaseModel):
    """A subscription (its secret is shown once, at creation)."""

    id: uuid.UUID
    url: str
    events: list[str]
    min_score: int
    description: str
    active: bool
    created_by: uuid.UUID | None
    created_at: datetime
    updated_at: datetime


class WebhookCreated(WebhookOut):
    """A new subscription with its signing secret; store it now, it is not shown again."""

    secret: str


class DeliveryOut(BaseModel):
    """One event sent to a webhook, with the receiver's last answer."""

    id: uuid.UUID
    webhook_id: uuid.UUID
    event: str
    status: str
    attempts: int
    response_code: int | None
    last_error: str | None
    next_attempt_at: datetime | None
    created_at: datetime
    delivered_at: datetime | None
    payload: dict[str, Any]


class TestQueued(BaseModel):
    """A test delivery queued as a job."""

    delivery_id: uuid.UUID
    job_id: uuid.UUID
