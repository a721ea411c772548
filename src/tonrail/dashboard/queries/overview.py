"""SQL of the dashboard's Overview: the figures of a time range and their series per bucket
(the buckets: ranges.py), and the page's assembly with the present (present.py).

Everything is aggregated in the database. The range figures are cached per process for a few
seconds (`RangeSpec.cache_seconds`, from 2 s for 1 h to 60 s for 7 d): several operators
polling every 2 s share one computation. Pending and stuck payments, alerts, the hot wallet
and the current congestion are read on every request.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Integer, and_, case, cast, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from tonrail import clock
from tonrail.dashboard.queries.objectives import objectives
from tonrail.dashboard.queries.present import (
    Alerts,
    CongestionNow,
    HotWalletBalance,
    Pending,
    alerts,
    congestion_now,
    hot_wallet,
    pending,
)
from tonrail.dashboard.queries.ranges import (
    RangeSpec,
    Window,
    duration_ms,
    in_segment,
    segment_table,
)
from tonrail.dashboard.shared import SharedFigures
from tonrail.db import Database
from tonrail.fees.models import FeeSample
from tonrail.monitoring.slo import Objective
from tonrail.payments.models import Attempt, Payment
from tonrail.payments.states import PaymentStatus
from tonrail.settings import Settings


# ------------------------------------------------------------------ the figures
@dataclass
class Finished:
    """Payments that ended (succeeded or failed) in the range."""

    succeeded: int = 0
    failed: int = 0
    # (direction, asset) -> (count, amount in minor units, micro-USDT equivalent)
    volume: dict[tuple[str, str], tuple[int, int, int]] = field(default_factory=dict)
    # per bucket: succeeded / failed counts, USDT equivalent by (direction, asset)
    bucket_succeeded: list[int] = field(default_factory=list)
    bucket_failed: list[int] = field(default_factory=list)
    bucket_volume: dict[tuple[str, str], list[int]] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return self.succeeded + self.failed

    @property
    def success_pct(self) -> float | None:
        return 100 * self.succeeded / self.total if self.total else None

    @property
    def volume_usdt(self) -> int:
        return sum(usdt for _, _, usdt in self.volume.values())

    def volume_by_asset(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for (_, asset), (_, amount, _) in sorted(self.volume.items()):
            out[asset] = out.get(asset, 0) + amount
        return out


@dataclass(frozen=True)
class Confirmation:
    """created -> completed of payouts that succeeded in the range (nearest-rank percentiles)."""

    count: int
    p50_ms: int | None
    p95_ms: int | None


@dataclass
class Fees:
    """Fees the attempts paid (attempts updated in the range with a fee)."""

    # (rail, fee asset) -> (attempts, sum in minor units of the fee asset)
    paid: dict[tuple[str, str], tuple[int, int]] = field(default_factory=dict)
    bucket_paid: dict[str, list[int]] = field(default_factory=dict)  # fee asset -> per bucket

    @property
    def attempts(self) -> int:
        return sum(n for n, _ in self.paid.values())

    def by_asset(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for (_, asset), (_, total) in sorted(self.paid.items()):
            out[asset] = out.get(asset, 0) + total
        return out


@dataclass(frozen=True)
class RangeFigures:
    """What a range shows: computed at `window.now`, shared for `cache_seconds`."""

    window: Window
    created_by_status: dict[str, list[int]]  # status -> payments created per bucket
    created_in_range: int
    finished: Finished
    confirmation: Confirmation
    fees: Fees
    congestion_avg_pct: list[float | None]
    congestion_peak_pct: list[float | None]


@dataclass(frozen=True)
class Overview:
    """The range's figures and what is true right now."""

    figures: RangeFigures
    now: datetime
    congestion: CongestionNow
    pending: Pending
    hot_wallet: list[HotWalletBalance]
    alerts: Alerts
    objectives: list[Objective]  # the service objectives over the range (monitoring/slo.py)

    # Shortcuts to the range's figures, the names the templates read; alike in shape only.
    @property
    def window(self) -> Window:
        return self.figures.window

    @property
    def finished(self) -> Finished:
        return self.figures.finished

    @property
    def confirmation(self) -> Confirmation:
        return self.figures.confirmation

    @property
    def fees(self) -> Fees:
        return self.figures.fees

    @property
    def created_by_status(self) -> dict[str, list[int]]:
        return self.figures.created_by_status

    @property
    def created_in_range(self) -> int:
        return self.figures.created_in_range


async def created_by_status(
    session: AsyncSession, window: Window
) -> tuple[dict[str, list[int]], int]:
    """Payments created per bucket by their current status; and how many in the range."""
    seg = segment_table(window)
    rows = await session.execute(
        select(seg.c.b, seg.c.r, Payment.status, func.count())
        .select_from(seg.join(Payment, in_segment(seg, Payment.created_at)))
        .group_by(seg.c.b, seg.c.r, Payment.status)
    )
    series: dict[str, list[int]] = {}
    in_range = 0
    for b, inside, status, count in rows:
        series.setdefault(status, [0] * window.buckets)[int(b)] += int(count)
        in_range += int(count) if inside else 0
    return series, in_range


async def finished(session: AsyncSession, window: Window) -> Finished:
    """Success rate and volume: payments that ended in the range, by bucket of completion."""
    seg = segment_table(window)
    # Grouped by segment and status; alike other figure queries in shape only.
    rows = await session.execute(
        select(
            seg.c.b,
            seg.c.r,
            Payment.status,
            Payment.direction,
            Payment.asset,
            func.count(),
            func.sum(Payment.amount),
            func.sum(Payment.usdt_equivalent),
        )
        # No WHERE on status: SQLite would then scan the status index once per segment.
        .select_from(seg.join(Payment, in_segment(seg, Payment.completed_at)))
        .group_by(seg.c.b, seg.c.r, Payment.status, Payment.direction, Payment.asset)
    )
    out = Finished(bucket_succeeded=[0] * window.buckets, bucket_failed=[0] * window.buckets)
    for b, inside, status, direction, asset, count, amount, usdt in rows:
        n, amount, usdt = int(count), int(amount or 0), int(usdt or 0)
        if status == PaymentStatus.FAILED:
            out.bucket_failed[b] += n
            out.failed += n if inside else 0
        elif status == PaymentStatus.SUCCEEDED:
            key = (direction, asset)
            out.bucket_succeeded[b] += n
            out.bucket_volume.setdefault(key, [0] * window.buckets)[b] += usdt
            if inside:
                out.succeeded += n
                c, a, u = out.volume.get(key, (0, 0, 0))
                out.volume[key] = (c + n, a + amount, u + usdt)
    return out


def shown_ms(ms: int) -> int:
    """A duration cut to what the page shows: 10 ms below 10 s, 100 ms below 100 s, then
    1 s. Cutting keeps order, so the percentile of cut values is the cut percentile."""
    step = 10 if ms < 10_000 else 100 if ms < 100_000 else 1_000
    return ms // step * step


def _shown_ms_sql(ms: ColumnElement[Any]) -> ColumnElement[Any]:
    """`shown_ms` in SQL (SQLite: integer division of non-negative integers is floor)."""
    whole = cast(ms, Integer)
    return case(
        (whole < 10_000, whole // 10 * 10),
        (whole < 100_000, whole // 100 * 100),
        else_=whole // 1_000 * 1_000,
    )


def _nearest_rank(histogram: Sequence[tuple[int, int]], n: int, pct: int) -> int:
    rank, seen = (n * pct + 99) // 100, 0  # ceil(n x pct / 100)
    for ms, count in histogram:
        seen += count
        if seen >= rank:
            return ms
    return histogram[-1][0]


async def confirmation(session: AsyncSession, window: Window, dialect: str) -> Confirmation:
    """p50 and p95 of created -> completed of payouts that succeeded in the range, at the
    page's resolution (`shown_ms`). Nearest rank: the value at rank ceil(p x n).

    PostgreSQL computes both with percentile_disc; SQLite builds a histogram of the shown
    values, so a few hundred rows leave the database, never one per payment."""
    payout_done: ColumnElement[bool] = and_(
        Payment.direction == "out", Payment.status == PaymentStatus.SUCCEEDED
    )
    if dialect == "sqlite":
        # As an expression, not plain WHERE terms: the completion-time index must drive the
        # query (SQLite would otherwise walk every succeeded payment in the status index).
        payout_done = case((payout_done, 1), else_=0) == 1
    took = duration_ms(Payment.created_at, Payment.completed_at, dialect)
    where = (Payment.completed_at >= window.since, Payment.completed_at <= window.now, payout_done)
    if dialect == "postgresql":
        n, p50, p95 = (
            await session.execute(
                select(
                    func.count(),
                    func.percentile_disc(0.5).within_group(took),
                    func.percentile_disc(0.95).within_group(took),
                ).where(*where)
            )
        ).one()
        if not n:
            return Confirmation(0, None, None)
        return Confirmation(int(n), shown_ms(max(0, int(p50))), shown_ms(max(0, int(p95))))
    shown = _shown_ms_sql(took).label("shown")
    rows = (
        await session.execute(
            select(shown, func.count()).where(*where).group_by(shown).order_by(shown)
        )
    ).all()
    histogram = [(max(0, int(ms)), int(count)) for ms, count in rows if ms is not None]
    n = sum(count for _, count in histogram)
    if not n:
        return Confirmation(0, None, None)
    return Confirmation(n, _nearest_rank(histogram, n, 50), _nearest_rank(histogram, n, 95))


async def fees(session: AsyncSession, window: Window) -> Fees:
    """Fees of attempts by rail and fee asset, per bucket of the attempt's last update."""
    seg = segment_table(window)
    rows = await session.execute(
        select(
            seg.c.b,
            seg.c.r,
            Attempt.rail,
            Attempt.fee_asset,
            func.count(),
            func.sum(Attempt.fee_amount),
        )
        .select_from(seg.join(Attempt, in_segment(seg, Attempt.updated_at)))
        .where(Attempt.fee_amount.is_not(None), Attempt.fee_asset.is_not(None))
        .group_by(seg.c.b, seg.c.r, Attempt.rail, Attempt.fee_asset)
    )
    out = Fees()
    for b, inside, rail, fee_asset, count, total in rows:
        asset, total = str(fee_asset), int(total or 0)
        out.bucket_paid.setdefault(asset, [0] * window.buckets)[int(b)] += total
        if inside:
            n, t = out.paid.get((rail, asset), (0, 0))
            out.paid[(rail, asset)] = (n + int(count), t + total)
    return out


async def congestion_series(
    session: AsyncSession, window: Window
) -> tuple[list[float | None], list[float | None]]:
    """Average and peak congestion (%) of the fee sampler's samples, per bucket."""
    seg = segment_table(window)
    rows = await session.execute(
        select(seg.c.b, func.avg(FeeSample.congestion_bp), func.max(FeeSample.congestion_bp))
        .select_from(seg.join(FeeSample, in_segment(seg, FeeSample.sampled_at)))
        .where(FeeSample.congestion_bp.is_not(None))
        .group_by(seg.c.b)
    )
    avg: list[float | None] = [None] * window.buckets
    peak: list[float | None] = [None] * window.buckets
    for b, mean, top in rows:
        if mean is not None:
            avg[int(b)] = round(float(mean) / 100, 2)
            peak[int(b)] = round(float(top) / 100, 2)
    return avg, peak


async def range_figures(session: AsyncSession, window: Window, dialect: str) -> RangeFigures:
    """Every figure of the range, read in the caller's (read) transaction."""
    series, created = await created_by_status(session, window)
    avg, peak = await congestion_series(session, window)
    return RangeFigures(
        window=window,
        created_by_status=series,
        created_in_range=created,
        finished=await finished(session, window),
        confirmation=await confirmation(session, window, dialect),
        fees=await fees(session, window),
        congestion_avg_pct=avg,
        congestion_peak_pct=peak,
    )


class RangeCache:
    """The figures of each range, reused while younger than the range's `cache_seconds` by
    the service clock (the dashboard's one SharedFigures cache)."""

    def __init__(self, shared: SharedFigures | None = None) -> None:
        self._shared = shared or SharedFigures()

    async def figures(self, db: Database, spec: RangeSpec, now: datetime) -> RangeFigures:
        async def compute(at: datetime) -> RangeFigures:
            window = Window.ending(spec, at)
            async with db.transaction() as session:
                return await range_figures(session, window, db.dialect)

        _, figures = await self._shared.get(
            ("overview", spec.key), spec.cache_seconds, now, compute
        )
        return figures


async def overview(
    db: Database, settings: Settings, spec: RangeSpec, cache: RangeCache
) -> Overview:
    """The page's figures: the range's (maybe a few seconds old) and the present's."""
    now = clock.now()
    figures = await cache.figures(db, spec, now)
    done = figures.finished
    async with db.transaction() as session:
        return Overview(
            figures=figures,
            now=now,
            congestion=await congestion_now(session),
            pending=await pending(session, settings, now, db.dialect),
            hot_wallet=await hot_wallet(session),
            alerts=await alerts(session),
            objectives=await objectives(
                session, figures.window, db.dialect, settings, done.succeeded, done.failed
            ),
        )


def statuses_in(series: dict[str, list[int]]) -> Sequence[str]:
    """Statuses in a stable display order: finished first, then in flight, then the rest."""
    p = PaymentStatus
    order = (
        p.SUCCEEDED,
        p.FAILED,
        p.PROCESSING,
        p.QUEUED,
        p.REQUIRES_APPROVAL,
        p.AWAITING_PAYMENT,
        p.CANCELED,
        p.EXPIRED,
    )
    return [s for s in order if s in series] + sorted(s for s in series if s not in order)
