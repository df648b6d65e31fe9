"""ATT&CK catalog per domain: rows keyed by (STIX id, domain), relationships carry their domain, loaded domains

Revision ID: a7e1c0d00761
Revises: a7e1c0d00750
Create Date: 2026-12-07 01:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import raptorflow.kit.db

revision: str = "a7e1c0d00761"
down_revision: str | None = "a7e1c0d00750"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Groups and software are published in several domains under one STIX id (Sandworm Team is in
# Enterprise, Mobile and ICS). Keyed by STIX id alone, loading ICS overwrote the Enterprise row's domain
# and a later Enterprise load hid the ICS relationships as "no longer in the bundle".
DEFAULT_DOMAIN = "enterprise-attack"


def _set_primary_key(table: str, columns: list[str]) -> None:
    name = f"pk_{table}"
    # SQLite rebuilds the table (batch mode); PostgreSQL alters it in place.
    with op.batch_alter_table(table) as batch_op:
        batch_op.drop_constraint(name, type_="primary")
        batch_op.create_primary_key(name, columns)


def upgrade() -> None:
    with op.batch_alter_table("attack_relationships") as batch_op:
        batch_op.add_column(
            sa.Column("domain", sa.String(length=32), nullable=False, server_default=DEFAULT_DOMAIN)
        )
    # A relationship came from the bundle of its source object (the only domain rows had until now).
    op.execute(
        "UPDATE attack_relationships SET domain = coalesce("
        "(SELECT o.domain FROM attack_objects o WHERE o.stix_id = attack_relationships.source_ref), "
        f"'{DEFAULT_DOMAIN}')"
    )
    with op.batch_alter_table("attack_relationships") as batch_op:
        batch_op.alter_column("domain", existing_type=sa.String(length=32), server_default=None)
    _set_primary_key("attack_objects", ["stix_id", "domain"])
    _set_primary_key("attack_relationships", ["stix_id", "domain"])
    op.create_table(
        "attack_domains",
        sa.Column("domain", sa.String(length=32), nullable=False),
        sa.Column("attack_version", sa.String(length=16), nullable=True),
        sa.Column("synced_at", raptorflow.kit.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("domain", name=op.f("pk_attack_domains")),
    )


def downgrade() -> None:
    op.drop_table("attack_domains")
    # One row per STIX id again: the copy of the first domain by name (Enterprise before ICS and Mobile).
    for table in ("attack_objects", "attack_relationships"):
        op.execute(
            f"DELETE FROM {table} WHERE EXISTS (SELECT 1 FROM {table} other "
            f"WHERE other.stix_id = {table}.stix_id AND other.domain < {table}.domain)"
        )
    _set_primary_key("attack_objects", ["stix_id"])
    _set_primary_key("attack_relationships", ["stix_id"])
    with op.batch_alter_table("attack_relationships") as batch_op:
        batch_op.drop_column("domain")
