"""ledger: the chain lts a journal entry books; ton_requests: the external's lt

Journal entries that book what the hot wallet's transactions did carry the lt of the first
and of the last of those transactions, so reconciliation can compare the books with the
chain up to an lt while requests are in flight (processing/reconcile.py). A processed
request keeps the lt of the transaction that took its external message.

Revision ID: 0018i
Revises: 0017s
Create Date: 2026-12-05 00:45:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0018i"
down_revision: str | None = "0017s"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = "0004"


def upgrade() -> None:
    with op.batch_alter_table("journal_entries", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "chain_first_lt",
                sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
                nullable=True,
            )
        )
        batch_op.add_column(
            sa.Column(
                "chain_lt", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
            )
        )
        batch_op.create_index("ix_journal_entries_chain_lt", ["chain_lt"], unique=False)
    with op.batch_alter_table("ton_requests", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("ext_lt", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("ton_requests", schema=None) as batch_op:
        batch_op.drop_column("ext_lt")
    with op.batch_alter_table("journal_entries", schema=None) as batch_op:
        batch_op.drop_index("ix_journal_entries_chain_lt")
        batch_op.drop_column("chain_lt")
        batch_op.drop_column("chain_first_lt")
