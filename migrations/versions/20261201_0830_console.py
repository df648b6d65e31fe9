"""Console (issue 8): browser sessions

Revision ID: a7e1c0d00708
Revises: a7e1c0d00706
Create Date: 2026-12-01 08:00:00
"""

from collections.abc import Sequence

revision: str = "a7e1c0d00708"
down_revision: str | None = "a7e1c0d00706"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """No schema change yet: this revision is reserved in the chain for its domain."""


def downgrade() -> None:
    """Nothing to undo."""
