"""ton_wallet_rotations: hot wallet rotations and their sweeps

Revision ID: 0018w
Revises: 0017s
Create Date: 2026-12-05 00:55:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import tonrail.db

revision: str = "0018w"
down_revision: str | None = "0017s"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "ton_wallet_rotations",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("open_marker", sa.String(length=8), nullable=True),
        sa.Column("old_wallet", sa.String(length=80), nullable=False),
        sa.Column("old_public_key", sa.String(length=64), nullable=False),
        sa.Column("new_wallet", sa.String(length=80), nullable=False),
        sa.Column("new_public_key", sa.String(length=64), nullable=False),
        sa.Column("new_key_file", sa.Text(), nullable=False),
        sa.Column("sweep_ton", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column(
            "sweep_usdt", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column(
            "sweep_query_seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column(
            "sweep_query_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column(
            "sweep_created_at", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column(
            "sweep_valid_until", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column("sweep_boc", sa.Text(), nullable=True),
        sa.Column("sweep_msg_hash", sa.String(length=64), nullable=True),
        sa.Column(
            "sweep_send_count", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("sweep_fee", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("sweep_entry_id", sa.String(length=40), nullable=True),
        sa.Column("actor", sa.String(length=80), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", tonrail.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", tonrail.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ton_wallet_rotations")),
        sa.UniqueConstraint("open_marker", name=op.f("uq_ton_wallet_rotations_open_marker")),
    )
    op.create_index(
        "ix_ton_wallet_rotations_old_wallet", "ton_wallet_rotations", ["old_wallet"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_ton_wallet_rotations_old_wallet", table_name="ton_wallet_rotations")
    op.drop_table("ton_wallet_rotations")
