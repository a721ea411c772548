"""Atomic reservation of daily volume: one conditional UPDATE, safe on PostgreSQL and SQLite."""

from __future__ import annotations

from sqlalchemy import update
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

    One upsert whose conflict branch only applies when the new total fits: concurrent
    reservations serialize on the row lock (PostgreSQL) or the write lock (SQLite) and the
    total can never pass the limit. Callers run it last in their transaction, so the row
    every payout touches is held only until the COMMIT that follows.
    """
    if amount_usdt > limit_usdt:
        _exceeded(day, limit_usdt)
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    new = insert(DailyVolume).values(day=day, used_usdt=amount_usdt)
    upsert = new.on_conflict_do_update(
        index_elements=["day"],
        set_={"used_usdt": DailyVolume.used_usdt + new.excluded.used_usdt},
        where=DailyVolume.used_usdt + new.excluded.used_usdt <= limit_usdt,
    ).returning(DailyVolume.used_usdt)
    if (await session.execute(upsert)).first() is None:
        _exceeded(day, limit_usdt)


def _exceeded(day: str, limit_usdt: int) -> None:
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
