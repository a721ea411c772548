"""SQL of the Fees page: congestion and fees over time, the optimizer's decisions, savings.

Series are bucketed in the database (epoch seconds divided by the bucket size, the same
arithmetic on SQLite and PostgreSQL) so a 7-day chart reads a few dozen rows, never the
samples or decisions themselves. The saving is the fees module's own definition (docs/FEES.md,
"Feedback"): over confirmed payouts with both numbers recorded, the fee each would have paid
alone at decision time minus the fee it really paid.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, TypeVar

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Float,
    SQLColumnExpression,
    and_,
    case,
    cast,
    extract,
    func,
    or_,
    select,
)
from sqlalchemy.ext.asyncio import AsyncSession

from tonrail.db import Database
from tonrail.errors import InvalidRequest
from tonrail.fees.models import FeeDecisionRecord, FeeSample
from tonrail.payments.models import Payment

OUTCOMES: tuple[str, ...] = ("pending", "confirmed", "failed", "diverted")
PRIORITIES: tuple[str, ...] = ("urgent", "normal", "low")
FEE_ASSETS: tuple[str, ...] = ("TON", "USDT")
NANO = 10**9
T = TypeVar("T")
R = TypeVar("R")


class ParamInvalid(InvalidRequest):
    """A query parameter of a page the page cannot use (400, with the parameter)."""

    code = "param_invalid"


def set_filters(filters: Any) -> dict[str, str]:
    """The filters of a dataclass that are set, by field name in field order (for URLs)."""
    return {f.name: value for f in fields(filters) if (value := getattr(filters, f.name))}


@dataclass(frozen=True, slots=True)
class Range:
    """A chart range: how far back, the width of one bucket, how long figures are shared."""

    key: str
    seconds: int
    step: int
    label_format: str
    cache_seconds: int

    def since(self, now: datetime) -> datetime:
        return now - timedelta(seconds=self.seconds)


# The Overview's buckets, so the same range reads the same on every page.
RANGES: dict[str, Range] = {
    "1h": Range("1h", 3600, 60, "%H:%M", 2),
    "24h": Range("24h", 86_400, 1800, "%H:%M", 15),
    "7d": Range("7d", 7 * 86_400, 14_400, "%a %H:%M", 60),
}
DEFAULT_RANGE = "24h"


def parse_range(value: str | None) -> Range:
    """`1h`, `24h` or `7d` (empty: the default); anything else is a 400 `range_invalid`."""
    if not value:
        return RANGES[DEFAULT_RANGE]
    found = RANGES.get(value)
    if found is None:
        raise ParamInvalid(
            f"range must be one of {', '.join(RANGES)}", param="range", code="range_invalid"
        )
    return found


def parse_choice(value: str | None, choices: Sequence[str], param: str) -> str | None:
    """An optional filter that must be one of `choices` (empty: no filter)."""
    if not value:
        return None
    if value not in choices:
        raise ParamInvalid(
            f"{param} must be one of {', '.join(choices)}", param=param, code=f"{param}_invalid"
        )
    return value


def bucket_of(column: Any, step: int, dialect: str) -> ColumnElement[int]:
    """The start (epoch seconds) of the `step`-second bucket a timestamp falls in."""
    if dialect == "postgresql":
        return cast(func.floor(extract("epoch", column) / step) * step, BigInteger)
    # SQLite stores UTC as naive text; strftime('%s') reads it as UTC.
    seconds = cast(func.strftime("%s", column), BigInteger)
    return (seconds // step) * step


def bucket_starts(r: Range, now: datetime) -> list[int]:
    """Every bucket of the range, oldest first (charts show gaps as gaps, not as missing)."""
    first = int(r.since(now).timestamp()) // r.step * r.step
    last = int(now.timestamp()) // r.step * r.step
    return list(range(first, last + 1, r.step))


def bucket_label(start: int, r: Range) -> str:
    return datetime.fromtimestamp(start, UTC).strftime(r.label_format)


def dialect_of(session: AsyncSession) -> str:
    return session.get_bind().dialect.name


def _num(value: Any) -> float | None:
    return None if value is None else float(value)


# ---------------------------------------------------------------- network over time
@dataclass(frozen=True, slots=True)
class SampleBucket:
    start: int
    samples: int
    congestion_pct: float | None  # smoothed, mean over the bucket
    raw_pct_max: float | None
    est_ton_alone: float | None  # nanoton, mean estimateFee of one TON payout alone
    est_ton_batched: float | None  # nanoton per payout in the probe batch


async def sample_series(session: AsyncSession, r: Range, now: datetime) -> list[SampleBucket]:
    """The sampler's rows bucketed (ix_fee_samples_sampled_fees covers every column read)."""
    b = bucket_of(FeeSample.sampled_at, r.step, dialect_of(session)).label("b")
    per_payout = cast(FeeSample.fee_ton_batch, Float) / func.nullif(FeeSample.batch_size, 0)
    stmt = (
        select(
            b,
            func.count(),
            func.avg(FeeSample.congestion_bp),
            func.max(FeeSample.congestion_raw_bp),
            func.avg(FeeSample.fee_ton_single),
            func.avg(per_payout),
        )
        .where(FeeSample.sampled_at >= r.since(now), FeeSample.sampled_at <= now)
        .group_by(b)
        .order_by(b)
    )
    out = []
    for start, n, cong, raw, alone, batched in (await session.execute(stmt)).all():
        cong_f, raw_f = _num(cong), _num(raw)
        out.append(
            SampleBucket(
                start=int(start),
                samples=int(n),
                congestion_pct=None if cong_f is None else cong_f / 100,
                raw_pct_max=None if raw_f is None else raw_f / 100,
                est_ton_alone=_num(alone),
                est_ton_batched=_num(batched),
            )
        )
    return out


# ---------------------------------------------------------------- fees paid and saved
@dataclass(frozen=True, slots=True)
class FeeBucket:
    """Confirmed payouts of one asset in one bucket (fees in nanoton)."""

    start: int
    asset: str
    payouts: int  # confirmed with a fee recorded
    fee_paid: int
    compared: int  # of those, with the fee alone recorded at decision time too
    compared_paid: int
    compared_alone: int

    @property
    def saved(self) -> int:
        return self.compared_alone - self.compared_paid


async def outcome_series(
    session: AsyncSession, r: Range, now: datetime
) -> tuple[list[FeeBucket], dict[str, int]]:
    """Confirmed payouts' fees per bucket and asset, and outcomes in the range, in one read
    of ix_fee_decisions_outcome_at (outcome_at is set with the outcome)."""
    d = FeeDecisionRecord
    b = bucket_of(d.outcome_at, r.step, dialect_of(session)).label("b")
    paid = d.fee_paid.is_not(None)
    both = and_(paid, d.alone_fee.is_not(None))
    stmt = (
        select(
            b,
            d.outcome,
            d.asset,
            func.count(),
            func.sum(case((paid, 1), else_=0)),
            func.sum(case((paid, d.fee_paid), else_=0)),
            func.sum(case((both, 1), else_=0)),
            func.sum(case((both, d.fee_paid), else_=0)),
            func.sum(case((both, d.alone_fee), else_=0)),
        )
        .where(d.outcome_at >= r.since(now), d.outcome_at <= now)
        .group_by(b, d.outcome, d.asset)
        .order_by(b, d.asset)
    )
    buckets: list[FeeBucket] = []
    outcomes = {o: 0 for o in OUTCOMES if o != "pending"}
    for start, outcome, asset, n, n_paid, s_paid, n_both, s_both_paid, s_both_alone in (
        await session.execute(stmt)
    ).all():
        outcomes[str(outcome)] = outcomes.get(str(outcome), 0) + int(n)
        if outcome == "confirmed" and n_paid:
            buckets.append(
                FeeBucket(
                    int(start),
                    str(asset),
                    int(n_paid),
                    int(s_paid or 0),
                    int(n_both or 0),
                    int(s_both_paid or 0),
                    int(s_both_alone or 0),
                )
            )
    return buckets, outcomes


@dataclass(frozen=True, slots=True)
class Savings:
    """Over the range: what confirmed payouts paid against what each would have cost alone."""

    payouts: int
    fee_paid: int
    alone_fee: int
    by_asset: Mapping[str, tuple[int, int, int]] = field(default_factory=dict)  # n, paid, alone

    @property
    def saved(self) -> int:
        return self.alone_fee - self.fee_paid

    @property
    def saved_pct(self) -> float | None:
        return 100 * self.saved / self.alone_fee if self.alone_fee else None


def savings_of(buckets: Sequence[FeeBucket]) -> Savings:
    per: dict[str, tuple[int, int, int]] = {}
    for fb in buckets:
        n, paid, alone = per.get(fb.asset, (0, 0, 0))
        per[fb.asset] = (n + fb.compared, paid + fb.compared_paid, alone + fb.compared_alone)
    return Savings(
        payouts=sum(v[0] for v in per.values()),
        fee_paid=sum(v[1] for v in per.values()),
        alone_fee=sum(v[2] for v in per.values()),
        by_asset=per,
    )


@dataclass(frozen=True, slots=True)
class FeeFigures:
    """Everything the Fees page shows over a range (shared between viewers for a while)."""

    samples: list[SampleBucket]
    paid: list[FeeBucket]
    outcomes: dict[str, int]  # confirmed, failed, diverted with the outcome in the range


async def fee_figures(db: Database, r: Range, now: datetime) -> FeeFigures:
    async with db.transaction() as session:
        samples = await sample_series(session, r, now)
        paid, outcomes = await outcome_series(session, r, now)
    return FeeFigures(samples, paid, outcomes)


# ---------------------------------------------------------------- the decisions
@dataclass(frozen=True, slots=True)
class DecisionFilters:
    outcome: str | None = None
    asset: str | None = None
    priority: str | None = None

    def raw(self) -> dict[str, str]:
        return set_filters(self)


def parse_decision_filters(params: Mapping[str, str]) -> DecisionFilters:
    return DecisionFilters(
        outcome=parse_choice(params.get("outcome"), OUTCOMES, "outcome"),
        asset=parse_choice(params.get("asset"), FEE_ASSETS, "asset"),
        priority=parse_choice(params.get("priority"), PRIORITIES, "priority"),
    )


def encode_cursor(at: datetime, key: str) -> str:
    return f"{at.astimezone(UTC).strftime('%Y%m%dT%H%M%S.%fZ')}~{key}"


def decode_cursor(value: str | None) -> tuple[datetime, str] | None:
    """A keyset cursor `<UTC timestamp>~<key>`; a malformed one is a 400 `cursor_invalid`."""
    if not value:
        return None
    stamp, sep, key = value.partition("~")
    try:
        if not sep or not key or len(key) > 64:
            raise ValueError(value)
        at = datetime.strptime(stamp, "%Y%m%dT%H%M%S.%fZ").replace(tzinfo=UTC)
    except ValueError:
        raise ParamInvalid(
            "the page cursor is malformed", param="before", code="cursor_invalid"
        ) from None
    return at, key


@dataclass(frozen=True, slots=True)
class Page(Generic[R]):
    """One page of rows, newest first, and the cursor of the next (older) page if there is one."""

    rows: list[R]
    next_cursor: str | None


def older_than(
    before: str | None, at: SQLColumnExpression[Any], key: SQLColumnExpression[str]
) -> list[ColumnElement[bool]]:
    """The keyset condition "(at, key) older than the cursor `before`"; none without one."""
    cursor = decode_cursor(before)
    if cursor is None:
        return []
    cursor_at, cursor_key = cursor
    return [or_(at < cursor_at, and_(at == cursor_at, key < cursor_key))]


def page_of(
    rows: list[R], limit: int, key_of: Callable[[R], tuple[datetime | None, str]]
) -> Page[R]:
    """`limit + 1` rows fetched newest first as a page: the extra row says a next one exists."""
    if len(rows) <= limit:
        return Page(rows, None)
    rows = rows[:limit]
    at, key = key_of(rows[-1])
    return Page(rows, encode_cursor(at, key) if at is not None else None)


@dataclass(frozen=True, slots=True)
class DecisionRow:
    d: FeeDecisionRecord
    payment_status: str | None
    counterparty: str | None

    @property
    def saved(self) -> int | None:
        """Alone at decision time minus paid; only for a confirmed payout with both known."""
        if self.d.outcome != "confirmed" or self.d.fee_paid is None or self.d.alone_fee is None:
            return None
        return self.d.alone_fee - self.d.fee_paid

    @property
    def held(self) -> bool:
        return self.d.send_at > self.d.decided_at


async def decisions(
    session: AsyncSession, f: DecisionFilters, limit: int, before: str | None = None
) -> Page[DecisionRow]:
    """The newest decisions first, `limit` a page, keyset on (decided_at, payment_id)."""
    d = FeeDecisionRecord
    conditions: list[ColumnElement[bool]] = []
    # One clause per filter of this page; alike other pages' filters in shape only.
    if f.outcome == "pending":
        conditions.append(d.outcome.is_(None))
    elif f.outcome:
        conditions.append(d.outcome == f.outcome)
    if f.asset:
        conditions.append(d.asset == f.asset)
    if f.priority:
        conditions.append(d.priority == f.priority)
    conditions += older_than(before, d.decided_at, d.payment_id)
    stmt = (
        select(d, Payment.status, Payment.counterparty)
        .outerjoin(Payment, Payment.id == d.payment_id)
        .where(*conditions)
        .order_by(d.decided_at.desc(), d.payment_id.desc())
        .limit(limit + 1)
    )
    rows = [DecisionRow(rec, st, cp) for rec, st, cp in (await session.execute(stmt)).all()]
    return page_of(rows, limit, lambda r: (r.d.decided_at, r.d.payment_id))


# ---------------------------------------------------------------- charts
def chart(
    kind: str, r: Range, starts: Sequence[int], datasets: list[dict[str, Any]], scales: Any
) -> dict[str, Any]:
    """A Chart.js config of `kind` ("line" or "bar") with a label per bucket start."""
    return {
        "type": kind,
        "data": {"labels": [bucket_label(s, r) for s in starts], "datasets": datasets},
        "options": {"scales": scales},
    }


def _ton(nano: float | None) -> float | None:
    return None if nano is None else round(nano / NANO, 6)


def congestion_chart(r: Range, now: datetime, series: Sequence[SampleBucket]) -> dict[str, Any]:
    """Chart.js: smoothed congestion (mean) and the worst raw reading per bucket, in %."""
    starts = bucket_starts(r, now)
    by = {s.start: s for s in series}
    return chart(
        "line",
        r,
        starts,
        [
            {
                "label": "congestion % (smoothed)",
                "data": [_round(by[s].congestion_pct) if s in by else None for s in starts],
                "borderColor": "#0098ea",
                "spanGaps": False,
            },
            {
                "label": "raw % (worst)",
                "data": [_round(by[s].raw_pct_max) if s in by else None for s in starts],
                "borderColor": "#d97706",
                "borderDash": [4, 3],
                "spanGaps": False,
            },
        ],
        {"y": {"min": 0, "max": 100}},
    )


def _round(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(value, digits)


def fee_chart(
    r: Range, now: datetime, paid: Sequence[FeeBucket], samples: Sequence[SampleBucket]
) -> dict[str, Any]:
    """Chart.js: the mean fee a confirmed payout paid, per asset, and the estimate of one TON
    payout sent alone (what it would cost unbatched), in TON."""
    starts = bucket_starts(r, now)
    by_asset: dict[str, dict[int, FeeBucket]] = {}
    for fb in paid:
        by_asset.setdefault(fb.asset, {})[fb.start] = fb
    est = {s.start: s for s in samples}
    colors = {"TON": "#16a34a", "USDT": "#2563eb"}
    datasets: list[dict[str, Any]] = [
        {
            "label": f"paid per {asset} payout (TON)",
            "data": [
                _ton(buckets[s].fee_paid / buckets[s].payouts)
                if s in buckets and buckets[s].payouts
                else None
                for s in starts
            ],
            "borderColor": colors.get(asset, "#667085"),
            "spanGaps": False,
        }
        for asset, buckets in sorted(by_asset.items())
    ]
    estimates: list[tuple[str, Callable[[SampleBucket], float | None], str, list[int]]] = [
        ("estimate: one TON payout alone", lambda b: b.est_ton_alone, "#dc2626", [4, 3]),
        ("estimate: per TON payout in a batch", lambda b: b.est_ton_batched, "#7c3aed", [2, 2]),
    ]
    for label, estimate, color, dash in estimates:
        datasets.append(
            {
                "label": label,
                "data": [_ton(estimate(est[s])) if s in est else None for s in starts],
                "borderColor": color,
                "borderDash": dash,
                "spanGaps": False,
            }
        )
    return chart("line", r, starts, datasets, {"y": {"min": 0}})


def savings_chart(r: Range, now: datetime, paid: Sequence[FeeBucket]) -> dict[str, Any]:
    """Chart.js: per bucket, fees paid vs what the same payouts would have paid alone (TON)."""
    starts = bucket_starts(r, now)
    paid_by: dict[int, int] = {}
    alone_by: dict[int, int] = {}
    for fb in paid:
        paid_by[fb.start] = paid_by.get(fb.start, 0) + fb.compared_paid
        alone_by[fb.start] = alone_by.get(fb.start, 0) + fb.compared_alone
    return chart(
        "bar",
        r,
        starts,
        [
            {
                "label": "paid (TON)",
                "data": [_ton(paid_by.get(s, 0)) for s in starts],
                "backgroundColor": "#16a34a",
            },
            {
                "label": "alone would have cost (TON)",
                "data": [_ton(alone_by.get(s, 0)) for s in starts],
                "backgroundColor": "#cbd5e1",
            },
        ],
        {"y": {"min": 0}},
    )
