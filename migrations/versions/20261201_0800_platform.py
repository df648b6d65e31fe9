"""Platform (issue 7): jobs, usage counters, outbound webhooks

Revision ID: a7e1c0d00701
Revises: 5b1c0e7d2a91
Create Date: 2026-12-01 08:00:00
"""

from collections.abc import Sequence

revision: str = "a7e1c0d00701"
down_revision: str | None = "5b1c0e7d2a91"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """No schema change yet: this revision is reserved in the chain for its domain."""


def downgrade() -> None:
    """Nothing to undo."""
