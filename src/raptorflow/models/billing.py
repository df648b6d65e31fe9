"""Billing: plans, subscriptions, orders, payments, the webhook inbox, the ledger and invoices.

Money is integer paise (BigInteger), never float. Ledger rows and invoices have no foreign key to
the organization: financial records outlive the org (tax law keeps them for years).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from raptorflow.kit.db import Base, IdMixin, JSONType, TimestampMixin, utcnow

SUBSCRIPTION_STATUS_CHECK = "status IN ('trialing', 'active', 'past_due', 'canceled')"
PAYMENT_STATUS_CHECK = "status IN ('created', 'failed', 'authorized', 'captured', 'refunded')"
LEDGER_ACCOUNTS = ("receivable", "revenue", "gst_payable", "gateway_clearing", "refunds")
ACCOUNT_CHECK = "{col} IN ('receivable', 'revenue', 'gst_payable', 'gateway_clearing', 'refunds')"


class Plan(TimestampMixin, Base):
    """A plan as data: price and limits (NULL limit = unlimited; NULL price = custom)."""

    __tablename__ = "billing_plans"

    code: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    price_paise: Mapped[int | None] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3), default="INR")
    requests_per_minute: Mapped[int | None] = mapped_column(Integer)
    requests_per_month: Mapped[int | None] = mapped_column(BigInteger)
    max_members: Mapped[int | None] = mapped_column(Integer)
    max_indicators: Mapped[int | None] = mapped_column(BigInteger)
    feeds: Mapped[bool] = mapped_column(Boolean, default=False)
    taxii_write: Mapped[bool] = mapped_column(Boolean, default=False)
    rank: Mapped[int] = mapped_column(Integer, default=0)

    __table_args__ = (CheckConstraint("price_paise IS NULL OR price_paise >= 0", name="price"),)


class Subscription(IdMixin, TimestampMixin, Base):
    """One per org: its plan, state, current period and what changes at the period's end."""

    __tablename__ = "billing_subscriptions"

    org_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"), unique=True)
    plan_code: Mapped[str] = mapped_column(ForeignKey("billing_plans.code"))
    status: Mapped[str] = mapped_column(String(16), default="active")
    current_period_start: Mapped[datetime] = mapped_column(default=utcnow)
    current_period_end: Mapped[datetime | None]
    pending_plan_code: Mapped[str | None] = mapped_column(ForeignKey("billing_plans.code"))
    cancel_at_period_end: Mapped[bool] = mapped_column(Boolean, default=False)
    grace_until: Mapped[datetime | None]
    billing_name: Mapped[str | None] = mapped_column(String(200))
    billing_address: Mapped[str | None] = mapped_column(String(500))
    billing_state: Mapped[str | None] = mapped_column(String(2))
    gstin: Mapped[str | None] = mapped_column(String(15))

    __table_args__ = (CheckConstraint(SUBSCRIPTION_STATUS_CHECK, name="status"),)


class BillingOrder(IdMixin, Base):
    """A Razorpay order we created for a plan change or a renewal."""

    __tablename__ = "billing_orders"

    org_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"), index=True)
    razorpay_order_id: Mapped[str] = mapped_column(String(64), unique=True)
    plan_code: Mapped[str] = mapped_column(ForeignKey("billing_plans.code"))
    purpose: Mapped[str] = mapped_column(String(16))  # upgrade | renewal
    net_paise: Mapped[int] = mapped_column(BigInteger)
    tax_paise: Mapped[int] = mapped_column(BigInteger)
    amount_paise: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    receipt: Mapped[str] = mapped_column(String(40))
    status: Mapped[str] = mapped_column(String(16), default="created")  # created | paid
    period_start: Mapped[datetime | None]
    period_end: Mapped[datetime | None]
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    request_hash: Mapped[str | None] = mapped_column(String(64))
    response: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    created_by: Mapped[uuid.UUID | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (
        UniqueConstraint("org_id", "idempotency_key"),
        CheckConstraint("amount_paise = net_paise + tax_paise AND net_paise > 0", name="amount"),
    )


class Payment(IdMixin, TimestampMixin, Base):
    """A Razorpay payment of one of our orders; credited at most once (credited_at set once)."""

    __tablename__ = "billing_payments"

    org_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"), index=True)
    order_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("billing_orders.id", ondelete="CASCADE"))
    razorpay_payment_id: Mapped[str] = mapped_column(String(64), unique=True)
    amount_paise: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(16), default="created")
    credited_at: Mapped[datetime | None]
    refunded_paise: Mapped[int] = mapped_column(BigInteger, default=0)
    review_reason: Mapped[str | None] = mapped_column(String(300))

    __table_args__ = (CheckConstraint(PAYMENT_STATUS_CHECK, name="status"),)


class Refund(IdMixin, Base):
    """A processed Razorpay refund, applied once (unique refund id)."""

    __tablename__ = "billing_refunds"

    org_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"), index=True)
    payment_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("billing_payments.id", ondelete="CASCADE"))
    razorpay_refund_id: Mapped[str] = mapped_column(String(64), unique=True)
    amount_paise: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (CheckConstraint("amount_paise > 0", name="amount"),)


class WebhookEvent(IdMixin, Base):
    """The inbox: one row per Razorpay event id, whatever the number of deliveries."""

    __tablename__ = "billing_webhook_events"

    event_id: Mapped[str] = mapped_column(String(128), unique=True)
    event: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONType)
    outcome: Mapped[str | None] = mapped_column(String(300))
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    processed_at: Mapped[datetime | None]


class LedgerTransaction(IdMixin, Base):
    """A balanced set of entries; immutable, corrected only by a reversing transaction."""

    __tablename__ = "ledger_transactions"

    org_id: Mapped[uuid.UUID] = mapped_column(index=True)
    kind: Mapped[str] = mapped_column(String(16))  # charge | payment | refund | credit_note | reversal
    # What it records (a payment id, a refund id): one transaction per kind and reference, ever.
    reference: Mapped[str] = mapped_column(String(128))
    memo: Mapped[str] = mapped_column(String(300), default="")
    reverses_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("ledger_transactions.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (UniqueConstraint("org_id", "kind", "reference"),)


class LedgerEntry(IdMixin, Base):
    """One amount debited to one account and credited to another, in one currency.

    Each row is its own debit and its own credit of the same amount, so every transaction balances
    per currency by construction; the CHECKs make the database refuse anything else.
    """

    __tablename__ = "ledger_entries"

    org_id: Mapped[uuid.UUID] = mapped_column(index=True)
    transaction_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("ledger_transactions.id"), index=True)
    debit_account: Mapped[str] = mapped_column(String(32))
    credit_account: Mapped[str] = mapped_column(String(32))
    amount_paise: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (
        CheckConstraint("amount_paise > 0", name="amount"),
        CheckConstraint("debit_account <> credit_account", name="two_sides"),
        CheckConstraint(ACCOUNT_CHECK.format(col="debit_account"), name="debit_account"),
        CheckConstraint(ACCOUNT_CHECK.format(col="credit_account"), name="credit_account"),
        CheckConstraint("length(currency) = 3", name="currency"),
    )


class Invoice(IdMixin, Base):
    """A tax invoice (a charge) or credit note (a refund), numbered gaplessly per financial year."""

    __tablename__ = "billing_invoices"

    org_id: Mapped[uuid.UUID] = mapped_column()
    number: Mapped[str] = mapped_column(String(32), unique=True)
    financial_year: Mapped[str] = mapped_column(String(7))
    seq: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(16))  # invoice | credit_note
    source: Mapped[str] = mapped_column(String(128), unique=True)  # payment:<id> | refund:<id>
    ledger_transaction_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("ledger_transactions.id"))
    related_invoice_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("billing_invoices.id"))
    issued_at: Mapped[datetime] = mapped_column(default=utcnow)
    seller: Mapped[dict[str, Any]] = mapped_column(JSONType)
    buyer: Mapped[dict[str, Any]] = mapped_column(JSONType)
    lines: Mapped[list[dict[str, Any]]] = mapped_column(JSONType)
    subtotal_paise: Mapped[int] = mapped_column(BigInteger)
    cgst_paise: Mapped[int] = mapped_column(BigInteger)
    sgst_paise: Mapped[int] = mapped_column(BigInteger)
    igst_paise: Mapped[int] = mapped_column(BigInteger)
    total_paise: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))

    __table_args__ = (
        Index("ix_billing_invoices_org_issued", "org_id", "issued_at"),
        UniqueConstraint("financial_year", "seq"),
        CheckConstraint("total_paise = subtotal_paise + cgst_paise + sgst_paise + igst_paise", name="total"),
    )


class InvoiceSequence(Base):
    """The last invoice number of a financial year; bumped in the invoice's own transaction (gapless)."""

    __tablename__ = "billing_invoice_sequences"

    financial_year: Mapped[str] = mapped_column(String(7), primary_key=True)
    last_number: Mapped[int] = mapped_column(Integer, default=0)


class UsageCount(Base):
    """A running count of an org's rows of one kind (indicators), so limit checks need no COUNT(*).

    Moves with inserts in their own transaction; deletes elsewhere leave it high (safe side), and it is
    recounted exactly when stale or when it says the limit is near.
    """

    __tablename__ = "billing_usage_counts"

    org_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), primary_key=True
    )
    resource: Mapped[str] = mapped_column(String(32), primary_key=True)
    count: Mapped[int] = mapped_column(BigInteger)
    counted_at: Mapped[datetime]
