"""screening: every AML/KYC screening decision

Revision ID: 0017s
Revises: 0017l
Create Date: 2026-12-04 22:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import tonrail.db

revision: str = "0017s"
down_revision: str | None = "0017l"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "screening_decisions",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("payment_id", sa.String(length=40), nullable=True),
        sa.Column("stage", sa.String(length=16), nullable=False),
        sa.Column("address", sa.String(length=128), nullable=True),
        sa.Column("name", sa.String(length=200), nullable=True),
        sa.Column("provider", sa.String(length=16), nullable=False),
        sa.Column("outcome", sa.String(length=8), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("reference", sa.String(length=80), nullable=False),
        sa.Column("requested_by", sa.String(length=80), nullable=True),
        sa.Column("decided_at", tonrail.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_screening_decisions_payment_id", "screening_decisions", ["payment_id"], unique=False
    )
    op.create_index(
        "ix_screening_decisions_decided",
        "screening_decisions",
        ["decided_at", "outcome"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_screening_decisions_decided", table_name="screening_decisions")
    op.drop_index("ix_screening_decisions_payment_id", table_name="screening_decisions")
    op.drop_table("screening_decisions")
