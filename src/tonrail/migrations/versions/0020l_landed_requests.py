"""treasury_orders.landed_at, ton_wallet_rotations.sweep_landed_at: a copy of the stored
request refused as already executed (exit code 36) proves it landed; it is not re-sent

Revision ID: 0020l
Revises: 0019f
Create Date: 2026-12-05 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import tonrail.db

revision: str = "0020l"
down_revision: str | None = "0019f"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("treasury_orders") as batch:
        batch.add_column(sa.Column("landed_at", tonrail.db.UTCDateTime(timezone=True)))
    with op.batch_alter_table("ton_wallet_rotations") as batch:
        batch.add_column(sa.Column("sweep_landed_at", tonrail.db.UTCDateTime(timezone=True)))


def downgrade() -> None:
    with op.batch_alter_table("ton_wallet_rotations") as batch:
        batch.drop_column("sweep_landed_at")
    with op.batch_alter_table("treasury_orders") as batch:
        batch.drop_column("landed_at")
