"""Atomic reservation of daily volume: one conditional UPDATE, safe on PostgreSQL and SQLite."""

from __future__ import annotations

from sqlalchemy import CursorResult, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from tonrail.errors import LimitExceeded
from tonrail.limits.models import DailyVolume
from tonrail.money import format_minor


async def reserve_daily_volume(
    session: AsyncSession, day: str, amount_usdt: int, limit_usdt: int
) -> None:
    """Add `amount_usdt` to the day's volume, or raise LimitExceeded and change nothing.

    The check and the increment are one statement, so concurrent reservations serialize on
    the row lock (PostgreSQL) or the write lock (SQLite) and the total can never pass the limit.
    """
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    await session.execute(
        insert(DailyVolume)
        .values(day=day, used_usdt=0)
        .on_conflict_do_nothing(index_elements=["day"])
    )
    result = await session.execute(
        update(DailyVolume)
        .where(DailyVolume.day == day, DailyVolume.used_usdt + amount_usdt <= limit_usdt)
        .values(used_usdt=DailyVolume.used_usdt + amount_usdt)
    )
    assert isinstance(result, CursorResult)
    if result.rowcount != 1:
        raise LimitExceeded(
            f"the daily payout volume limit of {format_minor(limit_usdt, 'USDT')} USDT "
            f"for {day} (UTC) would be exceeded",
            param="amount",
        )


async def release_daily_volume(session: AsyncSession, day: str, amount_usdt: int) -> None:
    """Give back volume of a payout that was canceled or failed without moving money."""
    await session.execute(
        update(DailyVolume)
        .where(DailyVolume.day == day)
        .values(used_usdt=DailyVolume.used_usdt - amount_usdt)
    )
