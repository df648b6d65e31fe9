"""Placeholder (reserved revision): single lookup statement

Revision ID: a7e1c0d00741
Revises: a7e1c0d00740
Create Date: 2026-12-01 15:41:00
"""

from collections.abc import Sequence

revision: str = "a7e1c0d00741"
down_revision: str | None = "a7e1c0d00740"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Nothing yet."""


def downgrade() -> None:
    """Nothing yet."""
