"""Platform: maintenance state (indicator expiry recorded, organizations being deleted)

Revision ID: a7e1c0d00720
Revises: a7e1c0d00704
Create Date: 2026-12-01 10:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import raptorflow.kit.db

revision: str = "a7e1c0d00720"
down_revision: str | None = "a7e1c0d00704"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = raptorflow.kit.db.UTCDateTime(timezone=True)
# Nullable columns without a default: on PostgreSQL adding them is a catalog change, not a rewrite.
DUE = "expired_at IS NULL AND valid_until IS NOT NULL"
RECORDED = "expired_at IS NOT NULL"


def upgrade() -> None:
    """`indicators.expired_at` with two partial indexes (due / recorded), `organizations.deleted_at`."""
    with op.batch_alter_table("indicators") as batch:
        batch.add_column(sa.Column("expired_at", TS, nullable=True))
    with op.batch_alter_table("organizations") as batch:
        batch.add_column(sa.Column("deleted_at", TS, nullable=True))
    # Each maintenance run reads only the rows that changed state: the newly expired leave the first
    # index once recorded, and only the recorded ones whose valid_until moved are found in the second.
    op.create_index(
        "ix_indicators_expiry_due",
        "indicators",
        ["org_id", "valid_until"],
        postgresql_where=sa.text(DUE),
        sqlite_where=sa.text(DUE),
    )
    op.create_index(
        "ix_indicators_expired",
        "indicators",
        ["org_id", "valid_until"],
        postgresql_where=sa.text(RECORDED),
        sqlite_where=sa.text(RECORDED),
    )


def downgrade() -> None:
    op.drop_index("ix_indicators_expired", table_name="indicators")
    op.drop_index("ix_indicators_expiry_due", table_name="indicators")
    with op.batch_alter_table("organizations") as batch:
        batch.drop_column("deleted_at")
    with op.batch_alter_table("indicators") as batch:
        batch.drop_column("expired_at")
