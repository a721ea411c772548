"""daily volume: the limit in force, and a check that the total never passes it

Revision ID: 0013
Revises: 0001
Create Date: 2026-11-27 19:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NO_LIMIT = str(2**63 - 1)  # rows from before this migration carry no limit of their own


def upgrade() -> None:
    with op.batch_alter_table("daily_volumes", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "limit_usdt",
                sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
                server_default=sa.text(NO_LIMIT),
                nullable=False,
            )
        )
        batch_op.create_check_constraint(
            op.f("ck_daily_volumes_within_limit"), "used_usdt <= limit_usdt"
        )


def downgrade() -> None:
    with op.batch_alter_table("daily_volumes", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_daily_volumes_within_limit"), type_="check")
        batch_op.drop_column("limit_usdt")
