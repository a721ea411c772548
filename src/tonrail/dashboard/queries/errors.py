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
    func,
    literal,
    null,
    select,
    union_all,
)
from sqlalchemy.ext.asyncio import AsyncSession

from tonrail.chain.address import counterparty_key
from tonrail.dashboard.shared import SharedFigures
from tonrail.db import Database
from tonrail.payments.models import Attempt, Payment
from tonrail.payments.states import FAILED_ATTEMPT_STATES, FINAL_ATTEMPT_STATES, PaymentStatus
from tonrail.security.lockouts import active as active_lockouts

# name -> (span, bucket seconds of the chart)
RANGES: dict[str, tuple[timedelta, int]] = {
    "1h": (timedelta(hours=1), 60),
    "24h": (timedelta(hours=24), 3600),
    "7d": (timedelta(days=7), 6 * 3600),
}
# A report is shared by every viewer (and poll) of the process while younger than this.
CACHE_SECONDS: dict[str, int] = {"1h": 2, "24h": 15, "7d": 60}
TOP_CODES_IN_CHART = 6
TOP_COUNTERPARTIES = 10
RECENT = 20
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


def _failures(since: datetime, until: datetime, payee: bool = True) -> Subquery:
    """One row per failure in [since, until): code, rail, counterparty, message, at, payment.

    `payee=False` leaves the counterparty out (NULL), which spares a join per failed attempt.
    """
    columns = (
        func.coalesce(Attempt.error_code, Attempt.status).label("code"),
        Attempt.rail.label("rail"),
        (Payment.counterparty if payee else null()).label("counterparty"),
        Attempt.error_message.label("message"),
        Attempt.updated_at.label("at"),
        Attempt.payment_id.label("payment_id"),
    )
    attempts = select(*columns).where(
        Attempt.status.in_(FAILED_ATTEMPT_STATES),
        Attempt.updated_at >= since,
        Attempt.updated_at < until,
    )
    if payee:
        attempts = attempts.join(Payment, Payment.id == Attempt.payment_id)
    without_attempts = select(
        func.coalesce(Payment.failure_code, literal(NO_CODE)).label("code"),
        func.coalesce(Payment.route, literal(NO_RAIL)).label("rail"),
        Payment.counterparty.label("counterparty"),
        Payment.failure_message.label("message"),
        Payment.completed_at.label("at"),
        Payment.id.label("payment_id"),
    ).where(
        Payment.status == PaymentStatus.FAILED,
        Payment.completed_at >= since,
        Payment.completed_at < until,
        # A per-row count, not NOT EXISTS: PostgreSQL would hash every attempt for the
        # anti-join, while the few failed payments of a range each need one index probe.
        select(func.count())
        .where(Attempt.payment_id == Payment.id)
        .correlate(Payment)
        .scalar_subquery()
        == 0,
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
    counted: Any = _failures(since, now, payee=False)
    dialect = session.get_bind().dialect.name

    # One pass over the failures gives the codes, the rails and the chart.
    bucket = _bucket(dialect, counted.c.at, bucket_seconds).label("bucket")
    grouped = (
        await session.execute(
            select(
                counted.c.code, counted.c.rail, bucket, func.count(), func.max(counted.c.at)
            ).group_by(counted.c.code, counted.c.rail, bucket)
        )
    ).all()
    per_code: dict[str, tuple[int, datetime | None]] = {}
    failed_by_rail: dict[str, int] = {}
    per_bucket: dict[tuple[int, str], int] = {}
    for code, rail, start, count, last in grouped:
        code, rail, count, last_at = str(code), str(rail), int(count), _aware(last)
        so_far, latest = per_code.get(code, (0, None))
        per_code[code] = (so_far + count, max((t for t in (latest, last_at) if t), default=None))
        failed_by_rail[rail] = failed_by_rail.get(rail, 0) + count
        per_bucket[int(start), code] = per_bucket.get((int(start), code), 0) + count
    by_code = sorted(
        (CodeCount(code, n, last) for code, (n, last) in per_code.items()),
        key=lambda c: (-c.count, c.code),
    )
    total = sum(c.count for c in by_code)

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
            RailCount(rail, failed_by_rail.get(rail, 0), int(finished_by_rail.get(rail, 0)))
            for rail in {*failed_by_rail, *finished_by_rail}
        ),
        key=lambda r: (-r.failures, r.rail),
    )

    first = int(since.timestamp()) // bucket_seconds * bucket_seconds
    buckets = list(range(first, int(now.timestamp()) + 1, bucket_seconds))
    shown = [c.code for c in by_code[:TOP_CODES_IN_CHART]]
    series = {code: [0] * len(buckets) for code in shown}
    if len(by_code) > TOP_CODES_IN_CHART:
        series["other"] = [0] * len(buckets)
    for (start, code), count in per_bucket.items():
        index = (start - first) // bucket_seconds
        if 0 <= index < len(buckets):
            series[code if code in shown else "other"][index] += count

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

    # The latest failures without the payee join, then the payees of those few.
    recent_rows = (
        await session.execute(
            select(
                counted.c.payment_id,
                counted.c.rail,
                counted.c.code,
                counted.c.message,
                counted.c.at,
            )
            .order_by(counted.c.at.desc())
            .limit(RECENT)
        )
    ).all()
    payees = dict(
        (
            await session.execute(
                select(Payment.id, Payment.counterparty).where(
                    Payment.id.in_({str(r[0]) for r in recent_rows})
                )
            )
        ).all()
    )
    recent = [
        RecentFailure(str(pid), str(rail), str(code), msg, payees.get(pid), _aware(at) or now)
        for pid, rail, code, msg, at in recent_rows
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


class ReportCache:
    """The report of each range, reused while younger than CACHE_SECONDS by the service
    clock (the dashboard's one SharedFigures cache)."""

    def __init__(self, shared: SharedFigures | None = None) -> None:
        self._shared = shared or SharedFigures()

    async def report(self, db: Database, range_name: str, now: datetime) -> ErrorsReport:
        async def compute(at: datetime) -> ErrorsReport:
            async with db.transaction() as session:
                return await report(session, range_name, at)

        _, found = await self._shared.get(
            ("errors", range_name), CACHE_SECONDS[range_name], now, compute
        )
        return found
