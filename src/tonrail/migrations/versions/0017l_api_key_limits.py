"""API key limits: max per payout, max per day (counted per key), assets, destinations

Revision ID: 0017l
Revises: 0017b
Create Date: 2026-12-04 22:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0017l"
down_revision: str | None = "0017b"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIGINT = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.add_column(sa.Column("max_payout_usdt", BIGINT, nullable=True))
        batch_op.add_column(sa.Column("max_daily_usdt", BIGINT, nullable=True))
        batch_op.add_column(sa.Column("allowed_assets", JSON, nullable=True))
        batch_op.add_column(sa.Column("allowed_destinations", JSON, nullable=True))
    op.create_table(
        "key_daily_volumes",
        sa.Column("key_id", sa.String(length=40), nullable=False),
        sa.Column("day", sa.String(length=10), nullable=False),
        sa.Column("used_usdt", BIGINT, nullable=False),
        sa.Column("limit_usdt", BIGINT, nullable=False),
        sa.CheckConstraint(
            "used_usdt <= limit_usdt", name=op.f("ck_key_daily_volumes_within_limit")
        ),
        sa.PrimaryKeyConstraint("key_id", "day", name=op.f("pk_key_daily_volumes")),
    )


def downgrade() -> None:
    op.drop_table("key_daily_volumes")
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.drop_column("allowed_destinations")
        batch_op.drop_column("allowed_assets")
        batch_op.drop_column("max_daily_usdt")
        batch_op.drop_column("max_payout_usdt")
