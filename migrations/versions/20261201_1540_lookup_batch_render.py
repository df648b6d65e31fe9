"""Placeholder (reserved revision): batch lookup rendering

Revision ID: a7e1c0d00740
Revises: a7e1c0d00730
Create Date: 2026-12-01 15:40:00
"""

from collections.abc import Sequence

revision: str = "a7e1c0d00740"
down_revision: str | None = "a7e1c0d00730"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Nothing yet."""


def downgrade() -> None:
    """Nothing yet."""
