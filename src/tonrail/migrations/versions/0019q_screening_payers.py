"""screening: a decision keeps a backup-rail payer's e-mail and IBAN (payment_credit)

Revision ID: 0019q
Revises: 0018d
Create Date: 2026-12-05 04:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0019q"
down_revision: str | None = "0018d"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("screening_decisions") as batch:
        batch.add_column(sa.Column("email", sa.String(length=200), nullable=True))
        batch.add_column(sa.Column("iban", sa.String(length=40), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("screening_decisions") as batch:
        batch.drop_column("iban")
        batch.drop_column("email")
