"""SQL of the dashboard's Errors page: failures by error code, by rail, over time, by payee.

A failure is an attempt that ended `failed` or `expired` (with its rail and error code), or a
payment that failed without ever getting an attempt (e.g. `no_rail_available`): each failed try
counts once, and a payout whose attempts already failed is not counted a second time.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Subquery,
    cast,
    exists,
    func,
    literal,
    select,
    union_all,
)
from sqlalchemy.ext.asyncio import AsyncSession

from tonrail.monitoring.lockouts import active as active_lockouts
from tonrail.monitoring.snapshot import counterparty_key
from tonrail.payments.models import Attempt, Payment

# name -> (span, bucket seconds of the chart)
RANGES: dict[str, tuple[timedelta, int]] = {
    "1h": (timedelta(hours=1), 60),
    "24h": (timedelta(hours=24), 3600),
    "7d": (timedelta(days=7), 6 * 3600),
}
FAILED_ATTEMPT_STATES = ("failed", "expired")
FINAL_ATTEMPT_STATES = ("confirmed", "failed", "expired")
TOP_CODES_IN_CHART = 6
TOP_COUNTERPARTIES = 10
NO_CODE = "(no code)"
NO_RAIL = "(none)"


@dataclass(frozen=True)
class CodeCount:
    code: str
    count: int
    last_at: datetime | None


@dataclass(frozen=True)
class RailCount:
    rail: str
    failures: int
    finished: int  # attempts that ended in the range, any outcome

    @property
    def failure_pct(self) -> float | None:
        return None if not self.finished else 100.0 * self.failures / self.finished


@dataclass(frozen=True)
class CounterpartyCount:
    counterparty: str
    count: int
    codes: list[str]
    last_at: datetime | None
    locked: bool


@dataclass(frozen=True)
class RecentFailure:
    payment_id: str
    rail: str
    code: str
    message: str | None
    counterparty: str | None
    at: datetime


@dataclass
class ErrorsReport:
    range: str
    since: datetime
    until: datetime
    bucket_seconds: int
    total: int
    by_code: list[CodeCount]
    by_rail: list[RailCount]
    # chart: bucket starts (epoch seconds) and, per code, the count in each bucket
    buckets: list[int]
    series: dict[str, list[int]]
    counterparties: list[CounterpartyCount]
    recent: list[RecentFailure]


def _failures(since: datetime, until: datetime) -> Subquery:
    """One row per failure in [since, until): code, rail, counterparty, message, at, payment."""
    attempts = (
        select(
            func.coalesce(Attempt.error_code, Attempt.status).label("code"),
            Attempt.rail.label("rail"),
            Payment.counterparty.label("counterparty"),
            Attempt.error_message.label("message"),
            Attempt.updated_at.label("at"),
            Attempt.payment_id.label("payment_id"),
        )
        .join(Payment, Payment.id == Attempt.payment_id)
        .where(
            Attempt.status.in_(FAILED_ATTEMPT_STATES),
            Attempt.updated_at >= since,
            Attempt.updated_at < until,
        )
    )
    without_attempts = select(
        func.coalesce(Payment.failure_code, literal(NO_CODE)).label("code"),
        func.coalesce(Payment.route, literal(NO_RAIL)).label("rail"),
        Payment.counterparty.label("counterparty"),
        Payment.failure_message.label("message"),
        Payment.completed_at.label("at"),
        Payment.id.label("payment_id"),
    ).where(
        Payment.status == "failed",
        Payment.completed_at >= since,
        Payment.completed_at < until,
        ~exists().where(Attempt.payment_id == Payment.id),
    )
    return union_all(attempts, without_attempts).subquery("failures")


def _bucket(dialect: str, at: Any, seconds: int) -> ColumnElement[int]:
    """Start of the `seconds`-wide bucket of `at`, in epoch seconds (SQL on both databases)."""
    epoch: ColumnElement[int] = (
        cast(func.strftime("%s", at), BigInteger)
        if dialect == "sqlite"
        else cast(func.floor(func.date_part("epoch", at)), BigInteger)
    )
    return (epoch // seconds) * seconds


async def report(session: AsyncSession, range_name: str, now: datetime) -> ErrorsReport:
    """Every aggregate of the Errors page for the range ending `now`."""
    span, bucket_seconds = RANGES[range_name]
    since = now - span
    failures: Any = _failures(since, now)
    dialect = session.get_bind().dialect.name

    code_rows = (
        await session.execute(
            select(failures.c.code, func.count(), func.max(failures.c.at))
            .group_by(failures.c.code)
            .order_by(func.count().desc(), failures.c.code)
        )
    ).all()
    by_code = [CodeCount(str(c), int(n), _aware(at)) for c, n, at in code_rows]
    total = sum(c.count for c in by_code)

    failed_by_rail: dict[str, int] = dict(
        (
            await session.execute(select(failures.c.rail, func.count()).group_by(failures.c.rail))
        ).all()
    )
    finished_by_rail: dict[str, int] = dict(
        (
            await session.execute(
                select(Attempt.rail, func.count())
                .where(
                    Attempt.status.in_(FINAL_ATTEMPT_STATES),
                    Attempt.updated_at >= since,
                    Attempt.updated_at < now,
                )
                .group_by(Attempt.rail)
            )
        ).all()
    )
    by_rail = sorted(
        (
            RailCount(
                str(rail),
                int(failed_by_rail.get(rail, 0)),
                int(finished_by_rail.get(rail, 0)),
            )
            for rail in {*failed_by_rail, *finished_by_rail}
        ),
        key=lambda r: (-r.failures, r.rail),
    )

    bucket = _bucket(dialect, failures.c.at, bucket_seconds).label("bucket")
    time_rows = (
        await session.execute(
            select(bucket, failures.c.code, func.count()).group_by(bucket, failures.c.code)
        )
    ).all()
    first = int(since.timestamp()) // bucket_seconds * bucket_seconds
    buckets = list(range(first, int(now.timestamp()) + 1, bucket_seconds))
    shown = [c.code for c in by_code[:TOP_CODES_IN_CHART]]
    series = {code: [0] * len(buckets) for code in shown}
    if len(by_code) > TOP_CODES_IN_CHART:
        series["other"] = [0] * len(buckets)
    for start, code, count in time_rows:
        index = (int(start) - first) // bucket_seconds
        if 0 <= index < len(buckets):
            series[code if code in shown else "other"][index] += int(count)

    # Grouped in SQL by the spelling stored; merged per address (any spelling) here.
    cp_rows = (
        await session.execute(
            select(
                failures.c.counterparty,
                func.count(),
                func.max(failures.c.at),
            )
            .where(failures.c.counterparty.is_not(None))
            .group_by(failures.c.counterparty)
            .order_by(func.count().desc())
            .limit(TOP_COUNTERPARTIES * 20)
        )
    ).all()
    merged: dict[str, tuple[str, int, datetime | None]] = {}
    spellings: dict[str, str] = {}
    for spelling, count, last in cp_rows:
        key = spellings[str(spelling)] = counterparty_key(str(spelling))
        seen = merged.get(key)
        last_at = _aware(last)
        if seen is None:
            merged[key] = (str(spelling), int(count), last_at)
        else:
            latest = max((t for t in (seen[2], last_at) if t is not None), default=None)
            merged[key] = (seen[0], seen[1] + int(count), latest)
    top = sorted(merged.items(), key=lambda kv: (-kv[1][1], kv[1][0]))[:TOP_COUNTERPARTIES]
    wanted = {key for key, _ in top}
    codes: dict[str, set[str]] = {key: set() for key in wanted}
    code_pairs = await session.execute(
        select(failures.c.counterparty, failures.c.code)
        .where(failures.c.counterparty.in_([s for s, k in spellings.items() if k in wanted]))
        .distinct()
    )
    for spelling, code in code_pairs.all():
        codes[spellings[str(spelling)]].add(str(code))
    locked = {
        lock.subject
        for lock in await active_lockouts(session)
        if lock.subject_kind == "counterparty"
    }
    counterparties = [
        CounterpartyCount(spelling, count, sorted(codes[key]), last, key in locked)
        for key, (spelling, count, last) in top
    ]

    recent_rows = (
        await session.execute(
            select(
                failures.c.payment_id,
                failures.c.rail,
                failures.c.code,
                failures.c.message,
                failures.c.counterparty,
                failures.c.at,
            )
            .order_by(failures.c.at.desc())
            .limit(20)
        )
    ).all()
    recent = [
        RecentFailure(str(pid), str(rail), str(code), msg, cp, _aware(at) or now)
        for pid, rail, code, msg, cp, at in recent_rows
    ]
    return ErrorsReport(
        range=range_name,
        since=since,
        until=now,
        bucket_seconds=bucket_seconds,
        total=total,
        by_code=by_code,
        by_rail=by_rail,
        buckets=buckets,
        series=series,
        counterparties=counterparties,
        recent=recent,
    )


def _aware(value: Any) -> datetime | None:
    """A timestamp from an aggregate over a UNION (SQLite hands back text there)."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return None
