"""loop_leases: one worker at a time runs `ton_payouts` (kit/loop_lease.py)

Revision ID: 0021w
Revises: 0020l
Create Date: 2026-12-05 18:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import tonrail.db

revision: str = "0021w"
down_revision: str | None = "0020l"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "loop_leases",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("locked_by", sa.String(64)),
        sa.Column("locked_until", tonrail.db.UTCDateTime(timezone=True)),
    )


def downgrade() -> None:
    op.drop_table("loop_leases")
