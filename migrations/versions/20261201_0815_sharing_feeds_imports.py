"""Sharing (issue 5): feeds, imports, exports

Revision ID: a7e1c0d00715
Revises: a7e1c0d00705
Create Date: 2026-12-01 08:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import raptorflow.kit.db
from raptorflow.kit.tenancy import tenant_rls_sql

revision: str = "a7e1c0d00715"
down_revision: str | None = "a7e1c0d00705"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TENANT_TABLES = ("feeds", "imports", "import_chunks")
JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
TS = raptorflow.kit.db.UTCDateTime(timezone=True)


def _org() -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(
        "org_id", sa.Uuid(), sa.ForeignKey("organizations.id", ondelete="CASCADE"), nullable=False
    )


def _user(name: str = "created_by") -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, sa.Uuid(), sa.ForeignKey("users.id", ondelete="SET NULL"), nullable=True)


def upgrade() -> None:
    op.create_table(
        "feeds",
        sa.Column("id", sa.Uuid(), nullable=False),
        _org(),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("config", JSON, nullable=False),
        sa.Column("secret", sa.Text(), nullable=True),
        sa.Column("schedule_minutes", sa.Integer(), nullable=True),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("project_id", sa.Uuid(), sa.ForeignKey("projects.id", ondelete="SET NULL"), nullable=True),
        sa.Column("default_tags", JSON, nullable=False),
        sa.Column("tlp", sa.String(length=16), nullable=False),
        sa.Column("confidence", sa.Integer(), nullable=False),
        sa.Column("bookmark", JSON, nullable=False),
        sa.Column("last_run_at", TS, nullable=True),
        sa.Column("last_status", sa.String(length=16), nullable=True),
        sa.Column("last_counts", JSON, nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("last_job_id", sa.Uuid(), sa.ForeignKey("jobs.id", ondelete="SET NULL"), nullable=True),
        _user(),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_feeds")),
        sa.UniqueConstraint("org_id", "name", name=op.f("uq_feeds_org_id_name")),
    )
    op.create_table(
        "imports",
        sa.Column("id", sa.Uuid(), nullable=False),
        _org(),
        sa.Column("job_id", sa.Uuid(), sa.ForeignKey("jobs.id", ondelete="SET NULL"), nullable=True),
        sa.Column("feed_id", sa.Uuid(), sa.ForeignKey("feeds.id", ondelete="SET NULL"), nullable=True),
        sa.Column("format", sa.String(length=16), nullable=False),
        sa.Column("filename", sa.String(length=300), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("options", JSON, nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("total", sa.BigInteger(), nullable=True),
        sa.Column("processed", sa.BigInteger(), nullable=False),
        sa.Column("created", sa.BigInteger(), nullable=False),
        sa.Column("merged", sa.BigInteger(), nullable=False),
        sa.Column("rejected", sa.BigInteger(), nullable=False),
        sa.Column("rejections", JSON, nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("finished_at", TS, nullable=True),
        _user(),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_imports")),
    )
    op.create_index("ix_imports_org_id", "imports", ["org_id", "id"])
    op.create_table(
        "import_chunks",
        sa.Column("import_id", sa.Uuid(), sa.ForeignKey("imports.id", ondelete="CASCADE"), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        _org(),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("import_id", "seq", name=op.f("pk_import_chunks")),
    )
    if op.get_context().dialect.name == "postgresql":
        for table in TENANT_TABLES:
            for statement in tenant_rls_sql(table):
                op.execute(statement)


def downgrade() -> None:
    op.drop_table("import_chunks")
    op.drop_index("ix_imports_org_id", table_name="imports")
    op.drop_table("imports")
    op.drop_table("feeds")
