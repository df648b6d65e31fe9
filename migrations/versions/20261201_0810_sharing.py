"""Sharing (issue 5): STIX objects, TAXII collections

Revision ID: a7e1c0d00705
Revises: a7e1c0d00701
Create Date: 2026-12-01 08:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import raptorflow.kit.db
from raptorflow.kit.tenancy import tenant_rls_sql

revision: str = "a7e1c0d00705"
down_revision: str | None = "a7e1c0d00701"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TENANT_TABLES = ("taxii_collections", "stix_objects", "taxii_statuses")
JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
TS = raptorflow.kit.db.UTCDateTime(timezone=True)


def _org() -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(
        "org_id", sa.Uuid(), sa.ForeignKey("organizations.id", ondelete="CASCADE"), nullable=False
    )


def upgrade() -> None:
    op.create_table(
        "taxii_collections",
        sa.Column("id", sa.Uuid(), nullable=False),
        _org(),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("filter", JSON, nullable=False),
        sa.Column("can_read", sa.Boolean(), nullable=False),
        sa.Column("can_write", sa.Boolean(), nullable=False),
        sa.Column("created_by", sa.Uuid(), sa.ForeignKey("users.id", ondelete="SET NULL"), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_taxii_collections")),
        sa.UniqueConstraint("org_id", "title", name=op.f("uq_taxii_collections_org_id_title")),
    )
    op.create_table(
        "stix_objects",
        sa.Column("id", sa.Uuid(), nullable=False),
        _org(),
        sa.Column("stix_id", sa.String(length=160), nullable=False),
        sa.Column("type", sa.String(length=64), nullable=False),
        sa.Column("modified", TS, nullable=True),
        sa.Column("object", JSON, nullable=False),
        sa.Column("native_kind", sa.String(length=32), nullable=True),
        sa.Column("native_id", sa.Uuid(), nullable=True),
        sa.Column(
            "collection_id",
            sa.Uuid(),
            sa.ForeignKey("taxii_collections.id", ondelete="SET NULL"),
            nullable=True,
        ),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_stix_objects")),
        sa.UniqueConstraint("org_id", "stix_id", name=op.f("uq_stix_objects_org_id_stix_id")),
    )
    op.create_index("ix_stix_objects_collection", "stix_objects", ["org_id", "collection_id", "updated_at"])
    op.create_table(
        "taxii_statuses",
        sa.Column("id", sa.Uuid(), nullable=False),
        _org(),
        sa.Column(
            "collection_id",
            sa.Uuid(),
            sa.ForeignKey("taxii_collections.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("request_timestamp", TS, nullable=False),
        sa.Column("total_count", sa.Integer(), nullable=False),
        sa.Column("success_count", sa.Integer(), nullable=False),
        sa.Column("failure_count", sa.Integer(), nullable=False),
        sa.Column("pending_count", sa.Integer(), nullable=False),
        sa.Column("successes", JSON, nullable=False),
        sa.Column("failures", JSON, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_taxii_statuses")),
    )
    # TAXII pages walk an org's indicators by (updated_at, id): the date_added order.
    op.create_index("ix_indicators_org_updated", "indicators", ["org_id", "updated_at", "id"])
    if op.get_context().dialect.name == "postgresql":
        for table in TENANT_TABLES:
            for statement in tenant_rls_sql(table):
                op.execute(statement)


def downgrade() -> None:
    op.drop_index("ix_indicators_org_updated", table_name="indicators")
    op.drop_table("taxii_statuses")
    op.drop_index("ix_stix_objects_collection", table_name="stix_objects")
    op.drop_table("stix_objects")
    op.drop_table("taxii_collections")
