"""Sharing: export/TAXII speed

Revision ID: a7e1c0d00722
Revises: a7e1c0d00721
Create Date: 2026-12-01 10:40:00
"""

from collections.abc import Sequence

revision: str = "a7e1c0d00722"
down_revision: str | None = "a7e1c0d00721"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# RESERVED revision (session 3): filled in by its owner, or removed at integration if unused.


def upgrade() -> None:
    return None


def downgrade() -> None:
    return None
