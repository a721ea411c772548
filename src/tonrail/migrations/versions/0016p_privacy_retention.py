"""privacy: the audit chain over content digests (erasable entries), the retention job's state

Revision ID: 0016p
Revises: 0006
Create Date: 2026-12-04 21:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import tonrail.db

revision: str = "0016p"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIGINT = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSON = sa.JSON().with_variant(sa.dialects.postgresql.JSONB(), "postgresql")


def _time(name: str, nullable: bool = True) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, tonrail.db.UTCDateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.add_column(sa.Column("content_digest", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("erased_by", BIGINT, nullable=True))

    op.create_table(
        "retention_runs",
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("day", sa.String(length=10), nullable=True),
        sa.Column("finished_day", sa.String(length=10), nullable=True),
        sa.Column("cursors", JSON, nullable=False),
        sa.Column("report", JSON, nullable=False),
        _time("started_at"),
        _time("finished_at"),
        sa.Column("locked_by", sa.String(length=64), nullable=True),
        _time("locked_until"),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_retention_runs")),
    )


def downgrade() -> None:
    op.drop_table("retention_runs")
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.drop_column("erased_by")
        batch_op.drop_column("content_digest")
