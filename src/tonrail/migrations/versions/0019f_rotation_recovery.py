"""ton_wallet_rotations: the way out of a failed sweep, asked by one operator, approved by
another (processing/rotation_recovery.py)

Revision ID: 0019f
Revises: 0018w
Create Date: 2026-12-05 04:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0019f"
down_revision: str | None = "0018w"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("ton_wallet_rotations") as batch:
        batch.add_column(sa.Column("recovery", sa.String(length=16), nullable=True))
        batch.add_column(sa.Column("recovery_requested_by", sa.String(length=80), nullable=True))
        batch.add_column(sa.Column("recovery_reason", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("ton_wallet_rotations") as batch:
        batch.drop_column("recovery_reason")
        batch.drop_column("recovery_requested_by")
        batch.drop_column("recovery")
