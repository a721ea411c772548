"""screening: a decision names the incoming transfer it screened (deposit_credit)

Revision ID: 0018d
Revises: 0017s
Create Date: 2026-12-05 00:45:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0018d"
down_revision: str | None = "0017s"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("screening_decisions") as batch:
        batch.add_column(sa.Column("deposit_id", sa.String(length=40), nullable=True))
    op.create_index(
        "ix_screening_decisions_deposit_id", "screening_decisions", ["deposit_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_screening_decisions_deposit_id", table_name="screening_decisions")
    with op.batch_alter_table("screening_decisions") as batch:
        batch.drop_column("deposit_id")
