"""Billing (issue 6): plans, subscriptions, orders, payments, ledger, invoices

Revision ID: a7e1c0d00706
Revises: a7e1c0d00715
Create Date: 2026-12-01 08:00:00
"""

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import raptorflow.kit.db
from raptorflow.kit.tenancy import append_only_rls_sql, tenant_rls_sql

revision: str = "a7e1c0d00706"
down_revision: str | None = "a7e1c0d00715"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TENANT_TABLES = (
    "billing_subscriptions",
    "billing_orders",
    "billing_payments",
    "billing_refunds",
    "billing_usage_counts",
)
# Financial records: the app role may read its org's rows and insert, never update or delete.
APPEND_ONLY_TABLES = ("ledger_transactions", "ledger_entries", "billing_invoices")
ACCOUNTS = "('receivable', 'revenue', 'gst_payable', 'gateway_clearing', 'refunds')"

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
TS = raptorflow.kit.db.UTCDateTime(timezone=True)

PLANS = [
    # code, name, price (paise, None = custom), per minute, per month, members, indicators, feeds, taxii write, rank
    ("free", "Free", 0, 100, 10_000, 3, 10_000, False, False, 0),
    ("pro", "Pro", 350_000, 1_000, 100_000, 25, 1_000_000, True, True, 1),
    ("enterprise", "Enterprise", None, 10_000, None, None, None, True, True, 2),
]


def _immutable_sqlite(table: str) -> None:
    # SQLite has no grants: a trigger refuses updates (deletes stay possible for test clean-up and
    # org erasure by the operator; the app has no delete path).
    op.execute(
        f"CREATE TRIGGER {table}_immutable BEFORE UPDATE ON {table} "
        f"BEGIN SELECT RAISE(ABORT, '{table} rows are immutable'); END"
    )


def upgrade() -> None:
    plans = op.create_table(
        "billing_plans",
        sa.Column("code", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("price_paise", sa.BigInteger(), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("requests_per_minute", sa.Integer(), nullable=True),
        sa.Column("requests_per_month", sa.BigInteger(), nullable=True),
        sa.Column("max_members", sa.Integer(), nullable=True),
        sa.Column("max_indicators", sa.BigInteger(), nullable=True),
        sa.Column("feeds", sa.Boolean(), nullable=False),
        sa.Column("taxii_write", sa.Boolean(), nullable=False),
        sa.Column("rank", sa.Integer(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.CheckConstraint("price_paise IS NULL OR price_paise >= 0", name=op.f("ck_billing_plans_price")),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_billing_plans")),
    )
    op.create_table(
        "billing_subscriptions",
        sa.Column("org_id", sa.Uuid(), nullable=False),
        sa.Column("plan_code", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("current_period_start", TS, nullable=False),
        sa.Column("current_period_end", TS, nullable=True),
        sa.Column("pending_plan_code", sa.String(length=32), nullable=True),
        sa.Column("cancel_at_period_end", sa.Boolean(), nullable=False),
        sa.Column("grace_until", TS, nullable=True),
        sa.Column("billing_name", sa.String(length=200), nullable=True),
        sa.Column("billing_address", sa.String(length=500), nullable=True),
        sa.Column("billing_state", sa.String(length=2), nullable=True),
        sa.Column("gstin", sa.String(length=15), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.CheckConstraint(
            "status IN ('trialing', 'active', 'past_due', 'canceled')",
            name=op.f("ck_billing_subscriptions_status"),
        ),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organizations.id"],
            name=op.f("fk_billing_subscriptions_org_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["plan_code"],
            ["billing_plans.code"],
            name=op.f("fk_billing_subscriptions_plan_code_billing_plans"),
        ),
        sa.ForeignKeyConstraint(
            ["pending_plan_code"],
            ["billing_plans.code"],
            name=op.f("fk_billing_subscriptions_pending_plan_code_billing_plans"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_billing_subscriptions")),
        sa.UniqueConstraint("org_id", name=op.f("uq_billing_subscriptions_org_id")),
    )
    op.create_table(
        "billing_orders",
        sa.Column("org_id", sa.Uuid(), nullable=False),
        sa.Column("razorpay_order_id", sa.String(length=64), nullable=False),
        sa.Column("plan_code", sa.String(length=32), nullable=False),
        sa.Column("purpose", sa.String(length=16), nullable=False),
        sa.Column("net_paise", sa.BigInteger(), nullable=False),
        sa.Column("tax_paise", sa.BigInteger(), nullable=False),
        sa.Column("amount_paise", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("receipt", sa.String(length=40), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("period_start", TS, nullable=True),
        sa.Column("period_end", TS, nullable=True),
        sa.Column("idempotency_key", sa.String(length=255), nullable=True),
        sa.Column("request_hash", sa.String(length=64), nullable=True),
        sa.Column("response", JSON, nullable=False),
        sa.Column("created_by", sa.Uuid(), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.CheckConstraint(
            "amount_paise = net_paise + tax_paise AND net_paise > 0", name=op.f("ck_billing_orders_amount")
        ),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organizations.id"],
            name=op.f("fk_billing_orders_org_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["plan_code"], ["billing_plans.code"], name=op.f("fk_billing_orders_plan_code_billing_plans")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_billing_orders")),
        sa.UniqueConstraint(
            "org_id", "idempotency_key", name=op.f("uq_billing_orders_org_id_idempotency_key")
        ),
        sa.UniqueConstraint("razorpay_order_id", name=op.f("uq_billing_orders_razorpay_order_id")),
    )
    op.create_index("ix_billing_orders_org_id", "billing_orders", ["org_id"])
    op.create_table(
        "billing_payments",
        sa.Column("org_id", sa.Uuid(), nullable=False),
        sa.Column("order_id", sa.Uuid(), nullable=False),
        sa.Column("razorpay_payment_id", sa.String(length=64), nullable=False),
        sa.Column("amount_paise", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("credited_at", TS, nullable=True),
        sa.Column("refunded_paise", sa.BigInteger(), nullable=False),
        sa.Column("review_reason", sa.String(length=300), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.CheckConstraint(
            "status IN ('created', 'failed', 'authorized', 'captured', 'refunded')",
            name=op.f("ck_billing_payments_status"),
        ),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organizations.id"],
            name=op.f("fk_billing_payments_org_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["order_id"],
            ["billing_orders.id"],
            name=op.f("fk_billing_payments_order_id_billing_orders"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_billing_payments")),
        sa.UniqueConstraint("razorpay_payment_id", name=op.f("uq_billing_payments_razorpay_payment_id")),
    )
    op.create_index("ix_billing_payments_org_id", "billing_payments", ["org_id"])
    op.create_table(
        "billing_refunds",
        sa.Column("org_id", sa.Uuid(), nullable=False),
        sa.Column("payment_id", sa.Uuid(), nullable=False),
        sa.Column("razorpay_refund_id", sa.String(length=64), nullable=False),
        sa.Column("amount_paise", sa.BigInteger(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.CheckConstraint("amount_paise > 0", name=op.f("ck_billing_refunds_amount")),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organizations.id"],
            name=op.f("fk_billing_refunds_org_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["payment_id"],
            ["billing_payments.id"],
            name=op.f("fk_billing_refunds_payment_id_billing_payments"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_billing_refunds")),
        sa.UniqueConstraint("razorpay_refund_id", name=op.f("uq_billing_refunds_razorpay_refund_id")),
    )
    op.create_index("ix_billing_refunds_org_id", "billing_refunds", ["org_id"])
    op.create_table(
        "billing_webhook_events",
        sa.Column("event_id", sa.String(length=128), nullable=False),
        sa.Column("event", sa.String(length=64), nullable=False),
        sa.Column("payload", JSON, nullable=False),
        sa.Column("outcome", sa.String(length=300), nullable=True),
        sa.Column("received_at", TS, nullable=False),
        sa.Column("processed_at", TS, nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_billing_webhook_events")),
        sa.UniqueConstraint("event_id", name=op.f("uq_billing_webhook_events_event_id")),
    )
    op.create_table(
        "ledger_transactions",
        sa.Column("org_id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("reference", sa.String(length=128), nullable=False),
        sa.Column("memo", sa.String(length=300), nullable=False),
        sa.Column("reverses_id", sa.Uuid(), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["reverses_id"],
            ["ledger_transactions.id"],
            name=op.f("fk_ledger_transactions_reverses_id_ledger_transactions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ledger_transactions")),
        sa.UniqueConstraint(
            "org_id", "kind", "reference", name=op.f("uq_ledger_transactions_org_id_kind_reference")
        ),
    )
    op.create_index("ix_ledger_transactions_org_id", "ledger_transactions", ["org_id"])
    op.create_table(
        "ledger_entries",
        sa.Column("org_id", sa.Uuid(), nullable=False),
        sa.Column("transaction_id", sa.Uuid(), nullable=False),
        sa.Column("debit_account", sa.String(length=32), nullable=False),
        sa.Column("credit_account", sa.String(length=32), nullable=False),
        sa.Column("amount_paise", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.CheckConstraint("amount_paise > 0", name=op.f("ck_ledger_entries_amount")),
        sa.CheckConstraint("debit_account <> credit_account", name=op.f("ck_ledger_entries_two_sides")),
        sa.CheckConstraint(f"debit_account IN {ACCOUNTS}", name=op.f("ck_ledger_entries_debit_account")),
        sa.CheckConstraint(f"credit_account IN {ACCOUNTS}", name=op.f("ck_ledger_entries_credit_account")),
        sa.CheckConstraint("length(currency) = 3", name=op.f("ck_ledger_entries_currency")),
        sa.ForeignKeyConstraint(
            ["transaction_id"],
            ["ledger_transactions.id"],
            name=op.f("fk_ledger_entries_transaction_id_ledger_transactions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ledger_entries")),
    )
    op.create_index("ix_ledger_entries_org_id", "ledger_entries", ["org_id"])
    op.create_index("ix_ledger_entries_transaction_id", "ledger_entries", ["transaction_id"])
    op.create_table(
        "billing_invoices",
        sa.Column("org_id", sa.Uuid(), nullable=False),
        sa.Column("number", sa.String(length=32), nullable=False),
        sa.Column("financial_year", sa.String(length=7), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("source", sa.String(length=128), nullable=False),
        sa.Column("ledger_transaction_id", sa.Uuid(), nullable=False),
        sa.Column("related_invoice_id", sa.Uuid(), nullable=True),
        sa.Column("issued_at", TS, nullable=False),
        sa.Column("seller", JSON, nullable=False),
        sa.Column("buyer", JSON, nullable=False),
        sa.Column("lines", JSON, nullable=False),
        sa.Column("subtotal_paise", sa.BigInteger(), nullable=False),
        sa.Column("cgst_paise", sa.BigInteger(), nullable=False),
        sa.Column("sgst_paise", sa.BigInteger(), nullable=False),
        sa.Column("igst_paise", sa.BigInteger(), nullable=False),
        sa.Column("total_paise", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.CheckConstraint(
            "total_paise = subtotal_paise + cgst_paise + sgst_paise + igst_paise",
            name=op.f("ck_billing_invoices_total"),
        ),
        sa.ForeignKeyConstraint(
            ["ledger_transaction_id"],
            ["ledger_transactions.id"],
            name=op.f("fk_billing_invoices_ledger_transaction_id_ledger_transactions"),
        ),
        sa.ForeignKeyConstraint(
            ["related_invoice_id"],
            ["billing_invoices.id"],
            name=op.f("fk_billing_invoices_related_invoice_id_billing_invoices"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_billing_invoices")),
        sa.UniqueConstraint("number", name=op.f("uq_billing_invoices_number")),
        sa.UniqueConstraint("source", name=op.f("uq_billing_invoices_source")),
        sa.UniqueConstraint("financial_year", "seq", name=op.f("uq_billing_invoices_financial_year_seq")),
    )
    op.create_index("ix_billing_invoices_org_issued", "billing_invoices", ["org_id", "issued_at"])
    op.create_table(
        "billing_invoice_sequences",
        sa.Column("financial_year", sa.String(length=7), nullable=False),
        sa.Column("last_number", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("financial_year", name=op.f("pk_billing_invoice_sequences")),
    )

    op.create_table(
        "billing_usage_counts",
        sa.Column("org_id", sa.Uuid(), nullable=False),
        sa.Column("resource", sa.String(length=32), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.Column("counted_at", TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organizations.id"],
            name=op.f("fk_billing_usage_counts_org_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("org_id", "resource", name=op.f("pk_billing_usage_counts")),
    )

    now = datetime.now(UTC)
    op.bulk_insert(
        plans,
        [
            {
                "code": code,
                "name": name,
                "price_paise": price,
                "currency": "INR",
                "requests_per_minute": per_minute,
                "requests_per_month": per_month,
                "max_members": members,
                "max_indicators": indicators,
                "feeds": feeds,
                "taxii_write": taxii,
                "rank": rank,
                "created_at": now,
                "updated_at": now,
            }
            for code, name, price, per_minute, per_month, members, indicators, feeds, taxii, rank in PLANS
        ],
    )

    if op.get_context().dialect.name == "postgresql":
        for table in TENANT_TABLES:
            for statement in tenant_rls_sql(table):
                op.execute(statement)
        for table in APPEND_ONLY_TABLES:
            for statement in append_only_rls_sql(table):
                op.execute(statement)
    else:
        for table in APPEND_ONLY_TABLES:
            _immutable_sqlite(table)


def downgrade() -> None:
    if op.get_context().dialect.name != "postgresql":
        for table in APPEND_ONLY_TABLES:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_immutable")
    op.drop_table("billing_usage_counts")
    op.drop_table("billing_invoice_sequences")
    op.drop_index("ix_billing_invoices_org_issued", table_name="billing_invoices")
    op.drop_table("billing_invoices")
    op.drop_index("ix_ledger_entries_transaction_id", table_name="ledger_entries")
    op.drop_index("ix_ledger_entries_org_id", table_name="ledger_entries")
    op.drop_table("ledger_entries")
    op.drop_index("ix_ledger_transactions_org_id", table_name="ledger_transactions")
    op.drop_table("ledger_transactions")
    op.drop_table("billing_webhook_events")
    op.drop_index("ix_billing_refunds_org_id", table_name="billing_refunds")
    op.drop_table("billing_refunds")
    op.drop_index("ix_billing_payments_org_id", table_name="billing_payments")
    op.drop_table("billing_payments")
    op.drop_index("ix_billing_orders_org_id", table_name="billing_orders")
    op.drop_table("billing_orders")
    op.drop_table("billing_subscriptions")
    op.drop_table("billing_plans")
