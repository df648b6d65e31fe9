"""Console (issue 8): the first-run setup token

Revision ID: a7e1c0d00708
Revises: a7e1c0d00706
Create Date: 2026-12-01 08:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import raptorflow.kit.db

revision: str = "a7e1c0d00708"
down_revision: str | None = "a7e1c0d00706"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = raptorflow.kit.db.UTCDateTime(timezone=True)


def upgrade() -> None:
    """Not a tenant table (it exists only before the first user); the app role gets it by default grant."""
    op.create_table(
        "console_setup_tokens",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=False),
        sa.Column("used_at", TS, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_console_setup_tokens")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_console_setup_tokens_token_hash")),
    )


def downgrade() -> None:
    op.drop_table("console_setup_tokens")
