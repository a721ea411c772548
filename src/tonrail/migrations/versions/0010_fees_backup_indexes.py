"""fees and backup pages: covering indexes for their time ranges

Revision ID: 0010
Revises: 0001
Create Date: 2026-11-27 20:10:00

The Fees page charts congestion and fee estimates by sample time and fees paid by outcome
time (so does GET /v1/fees/status' savings); the Backup payments page counts attempts by
start time, rail and status. Each reads one of these indexes alone.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0010"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
# fee_samples and fee_decisions come from 0005: run after it (every migration branches from 0001).
depends_on: str | Sequence[str] | None = "0005"

SAMPLES = ["sampled_at", "congestion_bp", "congestion_raw_bp", "fee_ton_single", "fee_ton_batch"]


def upgrade() -> None:
    op.create_index("ix_fee_samples_sampled_fees", "fee_samples", [*SAMPLES, "batch_size"])
    op.create_index(
        "ix_fee_decisions_outcome_at",
        "fee_decisions",
        ["outcome_at", "outcome", "asset", "fee_paid", "alone_fee"],
    )
    op.create_index(
        "ix_attempts_created_at", "attempts", ["created_at", "rail", "status", "payment_id"]
    )


def downgrade() -> None:
    op.drop_index("ix_attempts_created_at", table_name="attempts")
    op.drop_index("ix_fee_decisions_outcome_at", table_name="fee_decisions")
    op.drop_index("ix_fee_samples_sampled_fees", table_name="fee_samples")
