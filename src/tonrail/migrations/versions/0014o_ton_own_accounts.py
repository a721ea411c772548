"""ton own accounts: the hot wallet and its jetton wallet, so payouts to them are refused

Revision ID: 0014o
Revises: 0001
Create Date: 2026-12-04 18:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import tonrail.db

revision: str = "0014o"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "ton_own_accounts",
        sa.Column("address", sa.String(length=80), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("recorded_at", tonrail.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("address", name=op.f("pk_ton_own_accounts")),
    )


def downgrade() -> None:
    op.drop_table("ton_own_accounts")
