"""overview: covering indexes for the dashboard's time ranges

Revision ID: 0009
Revises: 0001
Create Date: 2026-11-27 19:40:00

The Overview aggregates payments by creation and completion time, attempts' fees by update
time and the fee sampler's congestion by sample time; each query reads one of these indexes
alone. The ledger's (account, asset) index gains `amount`, so a balance never reads the table.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0009"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
# fee_samples comes from 0005: run after it (every migration branches from 0001).
depends_on: str | Sequence[str] | None = "0005"

COMPLETED = [
    "completed_at",
    "status",
    "direction",
    "asset",
    "amount",
    "usdt_equivalent",
    "created_at",
]


def upgrade() -> None:
    op.create_index("ix_payments_created_at", "payments", ["created_at", "id", "status"])
    op.create_index("ix_payments_completed_at", "payments", COMPLETED)
    op.create_index(
        "ix_attempts_updated_at", "attempts", ["updated_at", "rail", "fee_asset", "fee_amount"]
    )
    op.create_index(
        "ix_fee_samples_sampled_congestion", "fee_samples", ["sampled_at", "congestion_bp"]
    )
    op.create_index(
        "ix_ledger_lines_account_asset_amount", "ledger_lines", ["account", "asset", "amount"]
    )
    op.drop_index("ix_ledger_lines_account_asset", table_name="ledger_lines")


def downgrade() -> None:
    op.create_index("ix_ledger_lines_account_asset", "ledger_lines", ["account", "asset"])
    op.drop_index("ix_ledger_lines_account_asset_amount", table_name="ledger_lines")
    op.drop_index("ix_fee_samples_sampled_congestion", table_name="fee_samples")
    op.drop_index("ix_attempts_updated_at", table_name="attempts")
    op.drop_index("ix_payments_completed_at", table_name="payments")
    op.drop_index("ix_payments_created_at", table_name="payments")
