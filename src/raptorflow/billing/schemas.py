"""Billing I/O models. Amounts are integer paise; inputs forbid unknown fields."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

PlanCode = str


class PlanOut(BaseModel):
    """A plan and its limits (null = unlimited; null price = custom, talk to sales)."""

    code: str
    name: str
    price_paise: int | None
    currency: str
    requests_per_minute: int | None
    requests_per_month: int | None
    max_members: int | None
    max_indicators: int | None
    feeds: bool
    taxii_write: bool


class PlanList(BaseModel):
    """Every plan, cheapest first."""

    items: list[PlanOut]


class BillingProfile(BaseModel):
    """Who invoices are addressed to."""

    model_config = ConfigDict(extra="forbid")

    billing_name: str = Field(min_length=1, max_length=200)
    billing_address: str = Field(default="", max_length=500)
    billing_state: str = Field(pattern=r"^[A-Z]{2}$", description="two-letter state code, e.g. KA")
    gstin: str | None = Field(default=None, pattern=r"^[0-9]{2}[A-Z0-9]{13}$")


class SubscriptionOut(BaseModel):
    """The org's subscription."""

    plan: PlanOut
    status: Literal["trialing", "active", "past_due", "canceled"]
    current_period_start: datetime
    current_period_end: datetime | None
    pending_plan: str | None
    cancel_at_period_end: bool
    grace_until: datetime | None
    billing_name: str | None
    billing_address: str | None
    billing_state: str | None
    gstin: str | None


class PlanChange(BaseModel):
    """A downgrade (or Free): takes effect at the end of the current period."""

    model_config = ConfigDict(extra="forbid")

    plan: str = Field(min_length=1, max_length=32)


class UsageItem(BaseModel):
    """One metered quantity against its plan limit (null limit = unlimited)."""

    used: int | None
    limit: int | None


class UsageOut(BaseModel):
    """What the org uses this month against its plan."""

    plan: str
    month: str
    requests_this_month: UsageItem
    indicators: UsageItem
    members: UsageItem


class OrderCreate(BaseModel):
    """Pay for a plan change: an upgrade now (prorated) or the renewal that is due."""

    model_config = ConfigDict(extra="forbid")

    plan: str = Field(min_length=1, max_length=32)


class OrderOut(BaseModel):
    """A Razorpay order to open Checkout with."""

    id: uuid.UUID
    razorpay_order_id: str
    razorpay_key_id: str
    plan: str
    purpose: str
    net_paise: int
    tax_paise: int
    amount_paise: int
    currency: str
    receipt: str
    status: str
    created_at: datetime


class PaymentVerify(BaseModel):
    """What Razorpay Checkout hands back after a payment."""

    model_config = ConfigDict(extra="forbid")

    razorpay_order_id: str = Field(min_length=1, max_length=64)
    razorpay_payment_id: str = Field(min_length=1, max_length=64)
    razorpay_signature: str = Field(min_length=1, max_length=128)


class VerifyOut(BaseModel):
    """The payment's state after verification and the subscription it bought."""

    payment_status: str
    credited: bool
    review_reason: str | None
    subscription: SubscriptionOut


class WebhookAck(BaseModel):
    """What the webhook answers Razorpay."""

    status: Literal["processed", "duplicate", "ignored"]
    outcome: str | None = None


class InvoiceOut(BaseModel):
    """An invoice or credit note."""

    id: uuid.UUID
    number: str
    kind: Literal["invoice", "credit_note"]
    issued_at: datetime
    financial_year: str
    seller: dict[str, Any]
    buyer: dict[str, Any]
    lines: list[dict[str, Any]]
    subtotal_paise: int
    cgst_paise: int
    sgst_paise: int
    igst_paise: int
    total_paise: int
    currency: str
    related_invoice_id: uuid.UUID | None
