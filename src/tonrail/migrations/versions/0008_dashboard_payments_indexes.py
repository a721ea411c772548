"""dashboard payments and errors: indexes for the filtered history and failures by time

Revision ID: 0008
Revises: 0001
Create Date: 2026-11-27 19:45:00

The Payments list walks `ix_payments_list` newest first and evaluates the status, direction,
asset and amount filters from the index alone, touching the table only for the rows it shows.
A rail filter starts from `ix_attempts_rail_payment` when few attempts ran on the rail. The
Errors page reads failed and expired attempts of a time range, and counts the attempts that
ended by rail, from `ix_attempts_status_updated` alone.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0008"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LIST = ["created_at", "id", "status", "direction", "asset", "amount"]


def upgrade() -> None:
    op.create_index("ix_payments_list", "payments", LIST)
    op.create_index("ix_attempts_rail_payment", "attempts", ["rail", "payment_id"])
    op.create_index("ix_attempts_status_updated", "attempts", ["status", "updated_at", "rail"])


def downgrade() -> None:
    op.drop_index("ix_attempts_status_updated", table_name="attempts")
    op.drop_index("ix_attempts_rail_payment", table_name="attempts")
    op.drop_index("ix_payments_list", table_name="payments")
