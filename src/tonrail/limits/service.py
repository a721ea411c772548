"""Atomic reservation of daily volume: one upsert, safe on PostgreSQL and SQLite.

Two forms of the same upsert. `reserve_daily_volume` runs inside a caller's transaction and
refuses by changing nothing (LimitExceeded), so the transaction stays usable.
`reservation_write` is for a use case whose writes are one statement: it has no
condition, and the row's CHECK (`used_usdt <= limit_usdt`) makes the whole statement fail
when the new total would pass the limit; `is_limit_violation` recognizes that failure.
Either way concurrent reservations serialize on the row lock (PostgreSQL) or the write lock
(SQLite) and the total can never pass the limit.
"""

from __future__ import annotations

from functools import partial
from typing import NoReturn

from sqlalchemy import bindparam, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql import FromClause
from sqlalchemy.sql.dml import Insert

from tonrail.db import Write
from tonrail.errors import KeyLimitExceeded, LimitExceeded
from tonrail.limits.models import KEY_WITHIN_LIMIT, WITHIN_LIMIT, DailyVolume, KeyDailyVolume
from tonrail.money import format_minor

Counter = type[DailyVolume] | type[KeyDailyVolume]


def _upsert(
    dialect: str,
    prefix: str,
    source: FromClause | None = None,
    *,
    refuse_quietly: bool,
    counter: Counter = DailyVolume,
) -> Insert:
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    keys = ["key_id", "day"] if counter is KeyDailyVolume else ["day"]
    columns = (*keys, "used_usdt", "limit_usdt")
    binds = [bindparam(prefix + c, type_=counter.__table__.c[c].type) for c in columns]
    new = (
        insert(counter).values(dict(zip(columns, binds, strict=True)))
        if source is None
        else insert(counter).from_select(list(columns), select(*binds).select_from(source))
    )
    fits = counter.used_usdt + new.excluded.used_usdt <= new.excluded.limit_usdt
    return new.on_conflict_do_update(
        index_elements=keys,
        set_={
            "used_usdt": counter.used_usdt + new.excluded.used_usdt,
            "limit_usdt": new.excluded.limit_usdt,
        },
        # Without the condition a total above the limit fails the row's CHECK instead.
        where=fits if refuse_quietly else None,
    )


_RESERVE: dict[str, Insert] = {}


async def reserve_daily_volume(
    session: AsyncSession, day: str, amount_usdt: int, limit_usdt: int
) -> None:
    """Add `amount_usdt` to the day's volume, or raise LimitExceeded and change nothing.

    Callers run it last in their transaction, so the row every payout touches is held only
    until the COMMIT that follows.
    """
    if amount_usdt > limit_usdt:
        limit_exceeded(day, limit_usdt)
    dialect = session.get_bind().dialect.name
    upsert = _RESERVE.get(dialect)
    if upsert is None:
        upsert = _RESERVE[dialect] = _upsert(dialect, "", refuse_quietly=True).returning(
            DailyVolume.used_usdt
        )
    values = {"day": day, "used_usdt": amount_usdt, "limit_usdt": limit_usdt}
    if (await session.execute(upsert, values)).first() is None:
        limit_exceeded(day, limit_usdt)


def reservation_write(dialect: str, day: str, amount_usdt: int, limit_usdt: int) -> Write:
    """The reservation as a Write that fails (CHECK violation) instead of refusing.

    For writes that happen all or not at all without a transaction around them
    (`write_at_once`); catch IntegrityError and ask `is_limit_violation`.
    """
    if amount_usdt < 0:
        raise ValueError(f"a reservation of {amount_usdt} USDT")  # adds: never negative
    if amount_usdt > limit_usdt:
        limit_exceeded(day, limit_usdt)
    return Write(
        ("daily_volume_reservation", dialect),
        partial(_upsert, dialect, refuse_quietly=False),
        {"day": day, "used_usdt": amount_usdt, "limit_usdt": limit_usdt},
        contended=True,
        adds=("used_usdt",),
    )


def is_limit_violation(exc: IntegrityError) -> bool:
    """Whether a failed statement failed on the daily volume's CHECK (both databases)."""
    return WITHIN_LIMIT in str(exc.orig)


def limit_exceeded(day: str, limit_usdt: int) -> NoReturn:
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


# ------------------------------------------------------------------ per API key
# The same two forms for a key's own daily limit (KeyLimits.max_daily_usdt): a key row
# locked before the day's row, on every path.
_RESERVE_KEY: dict[str, Insert] = {}


def key_limit_exceeded(limit_usdt: int) -> NoReturn:
    raise KeyLimitExceeded(
        f"this API key's daily payout limit of {format_minor(limit_usdt, 'USDT')} USDT "
        "(UTC day) would be exceeded",
        param="amount",
        code="key_daily_limit_exceeded",
    )


async def reserve_key_volume(
    session: AsyncSession, key_id: str, day: str, amount_usdt: int, limit_usdt: int
) -> None:
    """Add to the key's volume of the day, or raise KeyLimitExceeded and change nothing."""
    if amount_usdt > limit_usdt:
        key_limit_exceeded(limit_usdt)
    dialect = session.get_bind().dialect.name
    upsert = _RESERVE_KEY.get(dialect)
    if upsert is None:
        upsert = _RESERVE_KEY[dialect] = _upsert(
            dialect, "", refuse_quietly=True, counter=KeyDailyVolume
        ).returning(KeyDailyVolume.used_usdt)
    values = {"key_id": key_id, "day": day, "used_usdt": amount_usdt, "limit_usdt": limit_usdt}
    if (await session.execute(upsert, values)).first() is None:
        key_limit_exceeded(limit_usdt)


def key_reservation_write(
    dialect: str, key_id: str, day: str, amount_usdt: int, limit_usdt: int
) -> Write:
    """`reservation_write` for the key's own daily limit (ask `is_key_limit_violation`)."""
    if amount_usdt < 0:
        raise ValueError(f"a reservation of {amount_usdt} USDT")  # adds: never negative
    if amount_usdt > limit_usdt:
        key_limit_exceeded(limit_usdt)
    return Write(
        ("key_volume_reservation", dialect),
        partial(_upsert, dialect, refuse_quietly=False, counter=KeyDailyVolume),
        {"key_id": key_id, "day": day, "used_usdt": amount_usdt, "limit_usdt": limit_usdt},
        contended=True,
        adds=("used_usdt",),
    )


def is_key_limit_violation(exc: IntegrityError) -> bool:
    return KEY_WITHIN_LIMIT in str(exc.orig)


async def release_key_volume(session: AsyncSession, key_id: str, day: str, amount: int) -> None:
    """Give back a key's volume of a payout that was canceled or failed (no row: no limit)."""
    await session.execute(
        update(KeyDailyVolume)
        .where(KeyDailyVolume.key_id == key_id, KeyDailyVolume.day == day)
        .values(used_usdt=KeyDailyVolume.used_usdt - amount)
    )
