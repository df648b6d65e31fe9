"""Console: indexes and state for pages

Revision ID: a7e1c0d00721
Revises: a7e1c0d00720
Create Date: 2026-12-01 10:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "a7e1c0d00721"
down_revision: str | None = "a7e1c0d00720"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ARCHIVED = "archived_at IS NOT NULL"
FALSE_POSITIVE = "false_positive"
STATISTICS = "st_indicators_org_classification"


def upgrade() -> None:
    """Indexes behind the console's indicator list orders and filters at a million rows per org."""
    # Sort by score (and min_score ranges) without sorting the org's rows; `id` is the keyset tie-breaker.
    op.create_index("ix_indicators_org_score", "indicators", ["org_id", "score", "id"])
    # Filter by classification, sorted by score, or any order when the classification is rare.
    op.create_index(
        "ix_indicators_org_class_score", "indicators", ["org_id", "classification", "score", "id"]
    )
    # The archived and false-positive views read a few rows out of many: small partial indexes.
    op.create_index(
        "ix_indicators_org_archived",
        "indicators",
        ["org_id", "created_at"],
        postgresql_where=sa.text(ARCHIVED),
        sqlite_where=sa.text(ARCHIVED),
    )
    op.create_index(
        "ix_indicators_org_false_positive",
        "indicators",
        ["org_id", "created_at"],
        postgresql_where=sa.text(FALSE_POSITIVE),
        sqlite_where=sa.text(FALSE_POSITIVE),
    )
    if op.get_bind().dialect.name == "postgresql":
        # Table-wide statistics say "25% benign" when one org has 25% and another almost none: the
        # planner then walks that org's whole created_at index looking for 50 rare rows (seconds at
        # 1M). Per-(org, classification) frequencies let it pick the classification index instead.
        op.execute(
            f"CREATE STATISTICS IF NOT EXISTS {STATISTICS} (mcv) ON org_id, classification FROM indicators"
        )
        op.execute("ANALYZE indicators")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"DROP STATISTICS IF EXISTS {STATISTICS}")
    op.drop_index("ix_indicators_org_false_positive", table_name="indicators")
    op.drop_index("ix_indicators_org_archived", table_name="indicators")
    op.drop_index("ix_indicators_org_class_score", table_name="indicators")
    op.drop_index("ix_indicators_org_score", table_name="indicators")
