"""Claiming work rows with a lease: one statement, safe with any number of workers.

PostgreSQL: `UPDATE ... WHERE id IN (SELECT ... FOR UPDATE SKIP LOCKED LIMIT n) RETURNING`,
so concurrent workers take disjoint rows without waiting. SQLite ignores SKIP LOCKED; there
the same statement serializes on the database write lock, which gives the same guarantee.
A worker that dies keeps its rows only until `locked_until`; then any worker may take them.
`RETURNING` keeps no order, so the claimed rows are sorted again by `order_by` (ascending
columns of the model) before they are handed back.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from tonrail import clock

M = TypeVar("M")


async def claim(
    session: AsyncSession,
    model: type[M],
    condition: ColumnElement[bool],
    *,
    worker_id: str,
    lease_seconds: float,
    limit: int,
    order_by: Sequence[InstrumentedAttribute[Any]] = (),
) -> list[M]:
    """Lease up to `limit` rows of `model` matching `condition` that no live lease holds,
    in the order of `order_by` (ascending; NULLs last, as PostgreSQL sorts them)."""
    now = clock.now()
    table: Any = model
    pk = table.__mapper__.primary_key[0]
    free = or_(table.locked_until.is_(None), table.locked_until < now)
    candidates = (
        select(pk)
        .where(condition, free)
        .order_by(*order_by)
        .limit(limit)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    stmt = (
        update(table)
        .where(pk.in_(candidates))
        .values(locked_by=worker_id, locked_until=now + timedelta(seconds=lease_seconds))
        .returning(table)
        .execution_options(synchronize_session=False)
    )
    rows = list((await session.execute(stmt)).scalars())
    keys = [column.key for column in order_by]
    rows.sort(key=lambda row: [_nulls_last(getattr(row, k)) for k in keys])
    return rows


def _nulls_last(value: Any) -> tuple[bool, Any]:
    return (value is None, value if value is not None else 0)


async def release(
    session: AsyncSession, model: type[Any], ids: Sequence[Any], worker_id: str
) -> None:
    """Give rows back before the lease runs out (only those this worker still holds)."""
    pk = model.__mapper__.primary_key[0]
    await session.execute(
        update(model)
        .where(pk.in_(ids), model.locked_by == worker_id)
        .values(locked_by=None, locked_until=None)
        .execution_options(synchronize_session=False)
    )
