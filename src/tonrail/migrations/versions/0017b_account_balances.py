"""account balances: what each merchant account may still pay out, per asset

Revision ID: 0017b
Revises: 0016t
Create Date: 2026-12-04 21:50:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017b"
down_revision: str | None = "0016t"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "account_balances",
        sa.Column("account_id", sa.String(length=64), nullable=False),
        sa.Column("asset", sa.String(length=8), nullable=False),
        sa.Column(
            "available", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("overdraft_allowed", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.CheckConstraint(
            "available >= 0 OR overdraft_allowed", name=op.f("ck_account_balances_covered")
        ),
        sa.PrimaryKeyConstraint("account_id", "asset", name=op.f("pk_account_balances")),
    )
    # The balances the books hold already (a house account may be below zero: allowed).
    op.execute(
        "INSERT INTO account_balances (account_id, asset, available, overdraft_allowed) "
        "SELECT substr(account, 20), asset, -SUM(amount), true FROM ledger_lines "
        "WHERE account LIKE 'liability:merchant:%' GROUP BY account, asset"
    )


def downgrade() -> None:
    op.drop_table("account_balances")
