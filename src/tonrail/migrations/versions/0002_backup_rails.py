"""backup rails: provider events (stored first) and rail health (circuit breakers)

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27 16:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import tonrail.db

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "provider_events",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("external_id", sa.String(length=128), nullable=False),
        sa.Column("type", sa.String(length=96), nullable=False),
        sa.Column("object_ref", sa.String(length=128), nullable=True),
        sa.Column(
            "payload",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("outcome", sa.Text(), nullable=True),
        sa.Column(
            "process_count", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("received_at", tonrail.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("processed_at", tonrail.db.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_provider_events")),
        sa.UniqueConstraint("source", "external_id", name="uq_provider_events_source_external"),
    )
    with op.batch_alter_table("provider_events", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_provider_events_object_ref"), ["object_ref"], unique=False
        )
        batch_op.create_index("ix_provider_events_status", ["status", "received_at"], unique=False)

    op.create_table(
        "rail_health",
        sa.Column("rail", sa.String(length=16), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("failures", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("opened_at", tonrail.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.String(length=200), nullable=True),
        sa.Column("updated_at", tonrail.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("rail", name=op.f("pk_rail_health")),
    )


def downgrade() -> None:
    op.drop_table("rail_health")
    with op.batch_alter_table("provider_events", schema=None) as batch_op:
        batch_op.drop_index("ix_provider_events_status")
        batch_op.drop_index(batch_op.f("ix_provider_events_object_ref"))
    op.drop_table("provider_events")
