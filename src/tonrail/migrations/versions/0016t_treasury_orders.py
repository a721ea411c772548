"""treasury: multisig orders (payouts from the treasury, hot wallet top-ups)

Revision ID: 0016t
Revises: 0016k
Create Date: 2026-12-04 21:50:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import tonrail.db

revision: str = "0016t"
down_revision: str | None = "0016k"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIGINT = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _time(name: str, nullable: bool = True) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, tonrail.db.UTCDateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "treasury_orders",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("purpose", sa.String(length=16), nullable=False),
        sa.Column("payment_id", sa.String(length=40), nullable=True),
        sa.Column("asset", sa.String(length=8), nullable=False),
        sa.Column("amount", BIGINT, nullable=False),
        sa.Column("multisig", sa.String(length=80), nullable=False),
        sa.Column("order_seqno", BIGINT, nullable=False),
        sa.Column("order_address", sa.String(length=80), nullable=False),
        sa.Column("order_hash", sa.String(length=64), nullable=False),
        sa.Column("message_hash", sa.String(length=64), nullable=False),
        sa.Column("expiration_date", BIGINT, nullable=False),
        sa.Column("proposal_value", BIGINT, nullable=False),
        sa.Column("query_seq", BIGINT, nullable=False),
        sa.Column("valid_until", BIGINT, nullable=False),
        sa.Column("boc", sa.Text(), nullable=False),
        sa.Column("msg_hash_norm", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("approvals", BIGINT, nullable=False),
        sa.Column("threshold", BIGINT, nullable=False),
        sa.Column("send_count", BIGINT, nullable=False),
        _time("last_sent_at"),
        sa.Column("payout_tx_hash", sa.String(length=64), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        _time("created_at", nullable=False),
        _time("updated_at", nullable=False),
        sa.Column("locked_by", sa.String(length=64), nullable=True),
        _time("locked_until"),
        sa.ForeignKeyConstraint(
            ["payment_id"], ["payments.id"], name=op.f("fk_treasury_orders_payment_id_payments")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_treasury_orders")),
        sa.UniqueConstraint("payment_id", name=op.f("uq_treasury_orders_payment_id")),
        sa.UniqueConstraint("msg_hash_norm", name=op.f("uq_treasury_orders_msg_hash_norm")),
        sa.UniqueConstraint("multisig", "order_seqno", name="uq_treasury_orders_seqno"),
    )
    op.create_index(
        "ix_treasury_orders_status_locked",
        "treasury_orders",
        ["status", "locked_until"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_treasury_orders_status_locked", table_name="treasury_orders")
    op.drop_table("treasury_orders")
