"""access: lockout expiry, the access version API processes watch, dashboard sessions

Revision ID: 0015a
Revises: 0003
Create Date: 2026-12-04 18:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import tonrail.db

revision: str = "0015a"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIGINT = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _time(name: str, nullable: bool = True) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, tonrail.db.UTCDateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    with op.batch_alter_table("lockouts", schema=None) as batch_op:
        batch_op.add_column(_time("expires_at"))

    op.create_table(
        "access_version",
        sa.Column("id", BIGINT, nullable=False),
        sa.Column("version", BIGINT, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_access_version")),
    )

    op.create_table(
        "admin_sessions",
        sa.Column("sid_hash", sa.String(length=64), nullable=False),
        sa.Column("admin_id", sa.String(length=40), nullable=False),
        _time("created_at", nullable=False),
        _time("expires_at", nullable=False),
        _time("ended_at"),
        sa.PrimaryKeyConstraint("sid_hash", name=op.f("pk_admin_sessions")),
    )
    op.create_index(
        op.f("ix_admin_sessions_admin_id"), "admin_sessions", ["admin_id"], unique=False
    )
    op.create_index(
        op.f("ix_admin_sessions_expires_at"), "admin_sessions", ["expires_at"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_admin_sessions_expires_at"), table_name="admin_sessions")
    op.drop_index(op.f("ix_admin_sessions_admin_id"), table_name="admin_sessions")
    op.drop_table("admin_sessions")
    op.drop_table("access_version")
    with op.batch_alter_table("lockouts", schema=None) as batch_op:
        batch_op.drop_column("expires_at")
