"""overview: covering indexes for the dashboard's time ranges

Revision ID: 0009
Revises: 0001
Create Date: 2026-11-27 19:40:00

The Overview aggregates payments by completion time and attempts' fees by update time, each
from one of these indexes alone (payments by creation time come from 0008's ix_payments_list,
congestion from 0010's ix_fee_samples_sampled_fees). The ledger's (account, asset) index gains
`amount`, so a balance never reads the table.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0009"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

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
    op.create_index("ix_payments_completed_at", "payments", COMPLETED)
    op.create_index(
        "ix_attempts_updated_at", "attempts", ["updated_at", "rail", "fee_asset", "fee_amount"]
    )
    op.create_index(
        "ix_ledger_lines_account_asset_amount", "ledger_lines", ["account", "asset", "amount"]
    )
    op.drop_index("ix_ledger_lines_account_asset", table_name="ledger_lines")


def downgrade() -> None:
    op.create_index("ix_ledger_lines_account_asset", "ledger_lines", ["account", "asset"])
    op.drop_index("ix_ledger_lines_account_asset_amount", table_name="ledger_lines")
    op.drop_index("ix_attempts_updated_at", table_name="attempts")
    op.drop_index("ix_payments_completed_at", table_name="payments")
