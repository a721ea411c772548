"""monitoring_minutes: counts per minute for the service objectives (API latency, /readyz)

Revision ID: 0016s
Revises: 0003
Create Date: 2026-12-04 22:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import tonrail.db

revision: str = "0016s"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIGINT = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "monitoring_minutes",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("labels", sa.String(length=200), nullable=False),
        sa.Column("minute", tonrail.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("value", BIGINT, nullable=False),
        sa.PrimaryKeyConstraint("name", "labels", "minute", name=op.f("pk_monitoring_minutes")),
    )
    op.create_index("ix_monitoring_minutes_minute", "monitoring_minutes", ["minute"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_monitoring_minutes_minute", table_name="monitoring_minutes")
    op.drop_table("monitoring_minutes")
