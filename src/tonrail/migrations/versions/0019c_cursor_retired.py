"""ton_wallet_cursors.retired: the wallet's deposits are booked on the retired hot wallets

Set by a rotation's sweep booking under the cursor's lock (processing/wallet_rotation.py),
read by the deposit watcher from the row it locks (processing/deposits.py), instead of asking
ton_wallet_rotations every round. Cursors of wallets already swept are marked here.

Revision ID: 0019c
Revises: 0018w (and needs 0004)
Create Date: 2026-12-05 04:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0019c"
down_revision: str | None = "0018w"
branch_labels: str | Sequence[str] | None = None
# ton_wallet_cursors is created by 0004, on another branch than ton_wallet_rotations (0018w)
depends_on: str | Sequence[str] | None = "0004"


def upgrade() -> None:
    with op.batch_alter_table("ton_wallet_cursors", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("retired", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
    op.execute(
        "UPDATE ton_wallet_cursors SET retired = true WHERE wallet IN "
        "(SELECT old_wallet FROM ton_wallet_rotations "
        "WHERE state IN ('swept', 'deployed', 'switched'))"
    )


def downgrade() -> None:
    with op.batch_alter_table("ton_wallet_cursors", schema=None) as batch_op:
        batch_op.drop_column("retired")
