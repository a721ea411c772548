"""SQL of the payments domain."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Table, and_, or_, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from tonrail.db import Write, insert_row
from tonrail.payments.models import Approval, Attempt, Payment

PAYMENTS: Table = Payment.__table__  # type: ignore[assignment]
_COLUMNS = tuple((prop.key, prop.columns[0].key) for prop in Payment.__mapper__.column_attrs)


_COLUMN_OF = dict(_COLUMNS)


def insert_write(payment: Payment) -> Write:
    """The INSERT of a new (transient) payment as a Write (`write_at_once`)."""
    return insert_row(
        PAYMENTS, {name: getattr(payment, key) for key, name in _COLUMNS if key in payment.__dict__}
    )


def values_write(values: Mapping[str, Any]) -> Write:
    """`insert_write` of a new payment given as its fields (Payment's attribute names, as
    `PaymentService.payout_values` returns them), without building the mapped object."""
    return insert_row(PAYMENTS, {_COLUMN_OF[key]: value for key, value in values.items()})


async def get(
    session: AsyncSession, payment_id: str, account_id: str | None = None
) -> Payment | None:
    stmt = select(Payment).where(Payment.id == payment_id)
    if account_id is not None:
        stmt = stmt.where(Payment.account_id == account_id)
    return (await session.execute(stmt)).scalar_one_or_none()


async def get_for_update(
    session: AsyncSession, payment_id: str, account_id: str | None = None
) -> Payment | None:
    """The payment, its row locked until the transaction ends (PostgreSQL `FOR UPDATE`;
    SQLite's BEGIN IMMEDIATE already serializes every writer), read afresh."""
    stmt = select(Payment).where(Payment.id == payment_id).with_for_update()
    if account_id is not None:
        stmt = stmt.where(Payment.account_id == account_id)
    stmt = stmt.execution_options(populate_existing=True)
    return (await session.execute(stmt)).scalar_one_or_none()


async def page(
    session: AsyncSession,
    account_id: str,
    direction: str,
    limit: int,
    starting_after: Payment | None,
    status: str | None,
) -> tuple[list[Payment], bool]:
    """Newest first, keyset on (created_at, id); returns the page and whether more follow."""
    stmt = select(Payment).where(Payment.account_id == account_id, Payment.direction == direction)
    if status is not None:
        stmt = stmt.where(Payment.status == status)
    if starting_after is not None:
        stmt = stmt.where(
            or_(
                Payment.created_at < starting_after.created_at,
                and_(
                    Payment.created_at == starting_after.created_at,
                    Payment.id < starting_after.id,
                ),
            )
        )
    stmt = stmt.order_by(Payment.created_at.desc(), Payment.id.desc()).limit(limit + 1)
    rows = list((await session.execute(stmt)).scalars())
    return rows[:limit], len(rows) > limit


async def approvers(session: AsyncSession, payment_id: str) -> list[str]:
    stmt = select(Approval.approver).where(Approval.payment_id == payment_id).order_by(Approval.id)
    return list((await session.execute(stmt)).scalars())


async def add_approval(session: AsyncSession, payment_id: str, approver: str, at: datetime) -> bool:
    """Record an approval; False (and nothing written) if this approver has one already."""
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    stmt = (
        insert(Approval)
        .values(payment_id=payment_id, approver=approver, created_at=at)
        .on_conflict_do_nothing(index_elements=["payment_id", "approver"])
        .returning(Approval.id)
    )
    return (await session.execute(stmt)).first() is not None


async def attempts(session: AsyncSession, payment_id: str) -> Sequence[Attempt]:
    stmt = select(Attempt).where(Attempt.payment_id == payment_id).order_by(Attempt.number)
    return (await session.execute(stmt)).scalars().all()
