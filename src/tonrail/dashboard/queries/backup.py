"""SQL of the Backup payments page: attempts by rail, fallbacks and their reasons, breakers.

An attempt is one try of a payment on one rail, so "volume and success by rail" counts
attempts (created in the range) and the amounts of their payments. A fallback is an attempt
on a backup rail; its reason is what the router recorded on it (`details.reason`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, get_args

from sqlalchemy import ColumnElement, case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from tonrail.dashboard.queries.fees import (
    Page,
    ParamInvalid,
    Range,
    bucket_of,
    bucket_starts,
    chart,
    dialect_of,
    older_than,
    page_of,
    set_filters,
)
from tonrail.db import Database
from tonrail.money import ASSET_DECIMALS
from tonrail.payments.models import Attempt, Payment
from tonrail.payments.states import (
    FINAL_ATTEMPT_STATES,
    LIVE_ATTEMPT_STATES,
    AttemptStatus,
    PaymentStatus,
)
from tonrail.rails.base import RailName
from tonrail.rails.models import RailHealth
from tonrail.rails.router import BACKUP_RAILS, Breaker, BreakerPolicy, breaker_allows

RAILS: tuple[str, ...] = tuple(get_args(RailName))
BACKUPS: tuple[str, ...] = BACKUP_RAILS
DIRECTIONS: tuple[str, ...] = ("out", "in")
ATTEMPT_STATUSES: tuple[str, ...] = tuple(AttemptStatus)
LIVE = LIVE_ATTEMPT_STATES
FINISHED = FINAL_ATTEMPT_STATES
REASON_MAX = 64
COLORS = {"ton": "#0098ea", "stripe": "#635bff", "paypal": "#f59e0b", "bank": "#16a34a"}


def reason_of() -> ColumnElement[str]:
    """The router's reason stored on an attempt (`details.reason`), as text on both backends."""
    reason: ColumnElement[str] = Attempt.details["reason"].as_string()
    return reason


def parse_reason(value: str | None) -> str | None:
    if not value:
        return None
    if len(value) > REASON_MAX or not value.replace("_", "").isalnum():
        raise ParamInvalid(
            "reason is a word like ton_congested", param="reason", code="reason_invalid"
        )
    return value


@dataclass
class RailStats:
    """One rail over the range (amounts in each payment's own asset, minor units)."""

    rail: str
    attempts: int = 0
    by_status: dict[str, int] = field(default_factory=dict)
    volume: dict[str, int] = field(default_factory=dict)  # confirmed, by asset
    fees: dict[str, int] = field(default_factory=dict)  # confirmed, by fee asset
    payouts: int = 0
    invoices: int = 0

    @property
    def confirmed(self) -> int:
        return self.by_status.get("confirmed", 0)

    @property
    def finished(self) -> int:
        return sum(self.by_status.get(s, 0) for s in FINISHED)

    @property
    def live(self) -> int:
        return sum(self.by_status.get(s, 0) for s in LIVE)

    @property
    def success_pct(self) -> float | None:
        """Confirmed among attempts that are over (live ones are not judged yet)."""
        return 100 * self.confirmed / self.finished if self.finished else None


async def rail_stats(
    session: AsyncSession, since: datetime, until: datetime, direction: str | None
) -> dict[str, RailStats]:
    conditions = [Attempt.created_at >= since, Attempt.created_at <= until]
    if direction:
        conditions.append(Payment.direction == direction)
    # Grouped by rail and status; alike other figure queries in shape only.
    stmt = (
        select(
            Attempt.rail,
            Attempt.status,
            Payment.direction,
            Payment.asset,
            Attempt.fee_asset,
            func.count(),
            func.sum(Payment.amount),
            func.sum(Attempt.fee_amount),
        )
        .join(Payment, Payment.id == Attempt.payment_id)
        .where(*conditions)
        .group_by(Attempt.rail, Attempt.status, Payment.direction, Payment.asset, Attempt.fee_asset)
    )
    stats = {rail: RailStats(rail) for rail in RAILS}
    for rail, status, dirn, asset, fee_asset, n, amount, fee in (await session.execute(stmt)).all():
        s = stats.setdefault(rail, RailStats(rail))
        n = int(n)
        s.attempts += n
        s.by_status[status] = s.by_status.get(status, 0) + n
        if dirn == "out":
            s.payouts += n
        else:
            s.invoices += n
        if status == AttemptStatus.CONFIRMED:
            s.volume[asset] = s.volume.get(asset, 0) + int(amount or 0)
            if fee is not None and fee_asset:
                s.fees[fee_asset] = s.fees.get(fee_asset, 0) + int(fee)
    return stats


@dataclass(frozen=True, slots=True)
class RailBucket:
    start: int
    rail: str
    attempts: int
    confirmed: int
    finished: int


async def rail_series(
    session: AsyncSession, r: Range, now: datetime, direction: str | None
) -> list[RailBucket]:
    b = bucket_of(Attempt.created_at, r.step, dialect_of(session)).label("b")
    stmt = select(
        b,
        Attempt.rail,
        func.count(),
        func.sum(case((Attempt.status == AttemptStatus.CONFIRMED, 1), else_=0)),
        func.sum(case((Attempt.status.in_(FINISHED), 1), else_=0)),
    ).where(Attempt.created_at >= r.since(now), Attempt.created_at <= now)
    if direction:
        stmt = stmt.join(Payment, Payment.id == Attempt.payment_id).where(
            Payment.direction == direction
        )
    stmt = stmt.group_by(b, Attempt.rail).order_by(b)
    return [
        RailBucket(int(s), str(rail), int(n), int(ok or 0), int(done or 0))
        for s, rail, n, ok, done in (await session.execute(stmt)).all()
    ]


async def reason_counts(
    session: AsyncSession, since: datetime, until: datetime, direction: str | None
) -> list[tuple[str, str, int, int]]:
    """(reason, rail, attempts, confirmed) of attempts on backup rails, most frequent first."""
    reason = reason_of().label("reason")
    stmt = select(
        reason,
        Attempt.rail,
        func.count(),
        func.sum(case((Attempt.status == AttemptStatus.CONFIRMED, 1), else_=0)),
    ).where(
        Attempt.rail.in_(BACKUP_RAILS), Attempt.created_at >= since, Attempt.created_at <= until
    )
    if direction:
        stmt = stmt.join(Payment, Payment.id == Attempt.payment_id).where(
            Payment.direction == direction
        )
    stmt = stmt.group_by(reason, Attempt.rail)
    rows = [
        (str(a) if a is not None else "unrecorded", str(b), int(n), int(ok or 0))
        for a, b, n, ok in (await session.execute(stmt)).all()
    ]
    return sorted(rows, key=lambda row: (-row[2], row[0], row[1]))


@dataclass(frozen=True, slots=True)
class RailFigures:
    """What the Backup payments page shows over a range (shared between viewers a while)."""

    stats: dict[str, RailStats]
    series: list[RailBucket]
    reasons: list[tuple[str, str, int, int]]
    no_rail: Unroutable


async def rail_figures(db: Database, r: Range, now: datetime, direction: str | None) -> RailFigures:
    async with db.transaction() as session:
        since = r.since(now)
        return RailFigures(
            await rail_stats(session, since, now, direction),
            await rail_series(session, r, now, direction),
            await reason_counts(session, since, now, direction),
            await no_rail(session, since, now),
        )


@dataclass(frozen=True, slots=True)
class FallbackFilters:
    rail: str | None = None
    reason: str | None = None
    status: str | None = None
    direction: str | None = None

    def raw(self) -> dict[str, str]:
        return set_filters(self)


@dataclass(frozen=True, slots=True)
class FallbackRow:
    attempt: Attempt
    payment: Payment

    @property
    def reason(self) -> str | None:
        value = (self.attempt.details or {}).get("reason")
        return str(value) if value is not None else None

    @property
    def rail_amount(self) -> tuple[int, str] | None:
        """What the rail moved, in its own currency, as the rail's `prepare` recorded it."""
        details = self.attempt.details or {}
        amount, asset = details.get("rail_amount"), details.get("rail_asset")
        if isinstance(amount, int) and asset in ASSET_DECIMALS:
            return amount, asset
        return None


async def fallbacks(
    session: AsyncSession,
    f: FallbackFilters,
    since: datetime,
    until: datetime,
    limit: int,
    before: str | None = None,
) -> Page[FallbackRow]:
    """Attempts on backup rails in the range, newest first, keyset on (created_at, id)."""
    # On SQLite `rail || ''` keeps the planner off the rail index (it has no statistics):
    # walking the start-time index newest first, reading the rail from it, stops after one
    # page, where starting from the rail fetches and sorts every backup attempt of the range.
    # PostgreSQL plans from its statistics and starts from the (rare) backup rails.
    rail = Attempt.rail.concat("") if dialect_of(session) == "sqlite" else Attempt.rail
    conditions: list[ColumnElement[bool]] = [
        rail.in_([f.rail] if f.rail else list(BACKUP_RAILS)),
        Attempt.created_at >= since,
        Attempt.created_at <= until,
    ]
    # One clause per filter of this page; alike other pages' filters in shape only.
    if f.reason:
        conditions.append(reason_of() == f.reason)
    if f.status:
        conditions.append(Attempt.status == f.status)
    if f.direction:
        conditions.append(Payment.direction == f.direction)
    conditions += older_than(before, Attempt.created_at, Attempt.id)
    stmt = (
        select(Attempt, Payment)
        .join(Payment, Payment.id == Attempt.payment_id)
        .where(*conditions)
        .order_by(Attempt.created_at.desc(), Attempt.id.desc())
        .limit(limit + 1)
    )
    rows = [FallbackRow(a, p) for a, p in (await session.execute(stmt)).all()]
    return page_of(rows, limit, lambda r: (r.attempt.created_at, r.attempt.id))


@dataclass(frozen=True, slots=True)
class Unroutable:
    """Payouts failed in the range because every rail refused them (`no_rail_available`)."""

    count: int
    latest: list[Payment]


async def no_rail(
    session: AsyncSession, since: datetime, until: datetime, recent: int = 5
) -> Unroutable:
    failed = (
        Payment.status == PaymentStatus.FAILED,
        Payment.failure_code == "no_rail_available",
        Payment.updated_at >= since,
        Payment.updated_at <= until,
    )
    n = await session.scalar(select(func.count()).select_from(Payment).where(*failed))
    latest = (
        (
            await session.execute(
                select(Payment)
                .where(*failed)
                .order_by(Payment.updated_at.desc(), Payment.id.desc())
                .limit(recent)
            )
        )
        .scalars()
        .all()
    )
    for p in latest:
        session.expunge(p)  # shared between requests: detached, read-only
    return Unroutable(int(n or 0), list(latest))


async def waiting_for_backup(session: AsyncSession) -> dict[tuple[str, str], int]:
    """Queued payouts the router sent to a backup rail, not started yet, by (rail, the
    router's reason: `payments.route_reason`)."""
    rows = (
        await session.execute(
            select(Payment.route, Payment.route_reason, func.count())
            .where(Payment.status == PaymentStatus.QUEUED, Payment.route.in_(BACKUP_RAILS))
            .group_by(Payment.route, Payment.route_reason)
        )
    ).all()
    return {(str(r), str(why or "unrecorded")): int(c) for r, why, c in rows}


@dataclass(frozen=True, slots=True)
class BreakerView:
    """A rail's circuit breaker as the router sees it now."""

    rail: str
    configured: bool
    state: str  # closed | open | half_open (never failed: closed with no row)
    failures: int
    opened_at: datetime | None
    last_error: str | None
    updated_at: datetime | None
    admits_now: bool  # would the router send a new attempt to it now
    probe_at: datetime | None  # when an open breaker lets a probe through


async def breakers(
    session: AsyncSession,
    now: datetime,
    policy: BreakerPolicy,
    configured: Sequence[str],
) -> list[BreakerView]:
    rows = {row.rail: row for row in (await session.execute(select(RailHealth))).scalars()}
    out = []
    for rail in RAILS:
        row = rows.get(rail)
        b = (
            Breaker(row.state, row.failures, row.opened_at)  # type: ignore[arg-type]
            if row is not None
            else Breaker()
        )
        probe_at = (
            b.opened_at + timedelta(seconds=policy.open_seconds)
            if b.state == "open" and b.opened_at is not None
            else None
        )
        out.append(
            BreakerView(
                rail=rail,
                configured=rail == "ton" or rail in configured,
                state=b.state,
                failures=b.failures,
                opened_at=b.opened_at,
                last_error=row.last_error if row is not None else None,
                updated_at=row.updated_at if row is not None else None,
                admits_now=breaker_allows(b, now, policy),
                probe_at=probe_at,
            )
        )
    return out


# ---------------------------------------------------------------- charts
def _attempts(rb: RailBucket | None) -> int:
    return rb.attempts if rb is not None else 0


def _by_rail(series: Sequence[RailBucket]) -> dict[str, dict[int, RailBucket]]:
    by: dict[str, dict[int, RailBucket]] = {}
    for rb in series:
        by.setdefault(rb.rail, {})[rb.start] = rb
    return by


def attempts_chart(r: Range, now: datetime, series: Sequence[RailBucket]) -> dict[str, Any]:
    """Chart.js: attempts per bucket, stacked by rail."""
    starts = bucket_starts(r, now)
    by = _by_rail(series)
    return chart(
        "bar",
        r,
        starts,
        [
            {
                "label": rail,
                "data": [_attempts(by.get(rail, {}).get(s)) for s in starts],
                "backgroundColor": COLORS.get(rail, "#667085"),
                "stack": "attempts",
            }
            for rail in RAILS
        ],
        {"x": {"stacked": True}, "y": {"stacked": True, "min": 0}},
    )


def success_chart(r: Range, now: datetime, series: Sequence[RailBucket]) -> dict[str, Any]:
    """Chart.js: success % per rail per bucket (confirmed among finished; gap when none)."""
    starts = bucket_starts(r, now)
    by = _by_rail(series)

    def pct(rb: RailBucket | None) -> float | None:
        if rb is None or not rb.finished:
            return None
        return round(100 * rb.confirmed / rb.finished, 2)

    # A dataset per rail, as attempts_chart; only the measure and the kind differ.
    return chart(
        "line",
        r,
        starts,
        [
            {
                "label": rail,
                "data": [pct(by.get(rail, {}).get(s)) for s in starts],
                "borderColor": COLORS.get(rail, "#667085"),
                "spanGaps": True,
            }
            for rail in RAILS
        ],
        {"y": {"min": 0, "max": 100}},
    )


def totals(stats: Mapping[str, RailStats]) -> dict[str, int]:
    backup = [s for rail, s in stats.items() if rail != "ton"]
    return {
        "attempts": sum(s.attempts for s in stats.values()),
        "backup_attempts": sum(s.attempts for s in backup),
        "backup_confirmed": sum(s.confirmed for s in backup),
    }
