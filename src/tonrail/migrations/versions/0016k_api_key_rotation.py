"""API key rotation: a rolled key expires after an overlap and names its successor

Revision ID: 0016k
Revises: 0015a
Create Date: 2026-12-04 21:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import tonrail.db

revision: str = "0016k"
down_revision: str | None = "0015a"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("expires_at", tonrail.db.UTCDateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(sa.Column("successor_id", sa.String(length=40), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.drop_column("successor_id")
        batch_op.drop_column("expires_at")
