"""fee history: confirmed TON transfers by update time

Revision ID: 0010a
Revises: 0001
Create Date: 2026-11-27 20:40:00

The fee optimizer's history (load_conditions: GET /v1/fees/status, the Fees page, every payout
round) reads the confirmed transfers of its window; on (status, updated_at) it finds them
instead of reading every transfer ever made.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0010a"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
# ton_transfers comes from 0004: run after it (every migration branches from 0001).
depends_on: str | Sequence[str] | None = "0004"


def upgrade() -> None:
    op.create_index("ix_ton_transfers_status_updated", "ton_transfers", ["status", "updated_at"])


def downgrade() -> None:
    op.drop_index("ix_ton_transfers_status_updated", table_name="ton_transfers")
