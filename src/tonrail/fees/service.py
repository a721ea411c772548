"""Use cases of the fee optimizer: conditions for the policy, decisions, outcomes, status.

The payout loop calls, per round (docs/FEES.md, "Integration"):
    conditions = await load_conditions(db, settings)            # own read transaction
    decisions = await decide_for_batch(session, conditions, settings, payouts)
and, once a payout is final, `record_outcome(session, ...)` in the same transaction.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, cast

from sqlalchemy import Table, bindparam, update
from sqlalchemy.ext.asyncio import AsyncSession

from tonrail import clock
from tonrail.db import Database
from tonrail.fees import repository as repo
from tonrail.fees.models import FeeDecisionRecord, FeeSample
from tonrail.fees.policy import (
    Conditions,
    FeeDecision,
    FeeModel,
    FeePolicy,
    FeeStats,
    PayoutFacts,
    decide,
    fee_stats,
    percentile,
    unusually_high,
)
from tonrail.payments.models import Payment
from tonrail.payments.schemas import FeeDecisionOut
from tonrail.settings import Settings

# Kinds of fee history: estimates of representative requests and fees our payouts paid.
ESTIMATE_KINDS = ("ton_transfer_alone", "usdt_transfer_alone", "ton_batch_per_payout")
PAID_KINDS = ("ton_paid", "usdt_paid")
ARRIVAL_MIN_SPAN_S = 10.0  # the shortest span an arrival rate is measured over


def policy_of(settings: Settings, jetton_attach_cap: int = 0) -> FeePolicy:
    """The policy's thresholds from settings (TON valued at RATE_TON_USDT, USDT = USD)."""
    s = settings
    # A field per setting: alike other settings-to-dataclass maps in shape only.
    return FeePolicy(
        ton_usd_micro=int(Decimal(s.rate_ton_usdt) * 10**6),
        max_fee_usd_micro=s.fees_max_fee_usd_micro,
        max_fee_share_bp=s.fees_max_fee_share_bp,
        batch_max=s.ton_batch_max,
        window_max_ms={
            "urgent": s.fees_window_urgent_ms,
            "normal": s.fees_window_normal_ms,
            "low": s.fees_window_low_ms,
        },
        assumed_latency_ms=s.fees_assumed_latency_ms,
        value_of_time=s.fees_value_of_time_nanoton,
        hold_congestion_pct={
            "urgent": 101,
            "normal": s.fees_hold_congestion_normal_pct,
            "low": s.fees_hold_congestion_low_pct,
        },
        hold_step_s=s.fees_hold_step_seconds,
        divert_congestion_pct=s.fees_divert_congestion_pct,
        jetton_attach_default=s.ton_jetton_attach_nanoton,
        jetton_attach_min=s.fees_jetton_attach_min_nanoton,
        jetton_attach_margin_pct=s.fees_jetton_attach_margin_pct,
        jetton_attach_cap=jetton_attach_cap,
        jetton_forward=s.ton_jetton_forward_nanoton,
    )


@dataclass(frozen=True, slots=True)
class FeeConditions:
    """What the optimizer knows now: the latest sample, fee history, our queue."""

    at: datetime
    sample: FeeSample | None
    congestion_pct: float | None
    latency_ms: int | None
    model: FeeModel | None
    model_source: str  # estimate+history+fit | estimate | history | ... | none
    stats: Mapping[str, FeeStats | None]
    high: Mapping[str, bool]  # kind -> unusually high now
    queued: Mapping[str, int] = field(default_factory=dict)  # payouts waiting, by priority
    # recent arrivals per second by (asset, priority) (arrival_rates)
    arrivals: Mapping[tuple[str, str], float] = field(default_factory=dict)

    @property
    def fee_spike(self) -> bool:
        return any(self.high.get(k, False) for k in ESTIMATE_KINDS)

    @property
    def queued_total(self) -> int:
        return sum(self.queued.values())


def fee_model(
    latest: FeeSample | None, paid: Sequence[repo.PaidTransfer]
) -> tuple[FeeModel | None, str]:
    """A request's overhead and the part per payout, from estimateFee and our history.

    estimateFee prices the hot wallet's external transaction: per TON payout
    m = (E_N - E_1) / (N - 1), overhead o = E_1 - m, per USDT payout E_usdt - o. What the rest
    of the trace costs (the internal_transfer, jetton wallets) comes from fees we paid: a
    payout's own part (its fee minus its share of the request's common fee) is added per
    asset, and the overhead becomes the p50 of (common fee - n x m) over our requests.
    """
    per: dict[str, int] = {}
    overhead: int | None = None
    source: list[str] = []
    m = 0
    if latest is not None and latest.fee_ton_single is not None and latest.fee_ton_batch:
        n = max(2, latest.batch_size)
        m = max(0, (latest.fee_ton_batch - latest.fee_ton_single) // (n - 1))
        overhead = max(0, latest.fee_ton_single - m)
        per["TON"] = m
        if latest.fee_usdt_single is not None:
            per["USDT"] = max(0, latest.fee_usdt_single - overhead)
        source.append("estimate")
    own: dict[str, list[int]] = {}
    common: dict[str, tuple[int, int]] = {}
    for t in paid:
        share = (t.request_fee or 0) // max(t.request_size, 1)
        own.setdefault(t.asset, []).append(max(0, t.fee - share))
        if t.request_fee is not None:
            common[t.request_id] = (t.request_fee, t.request_size)
    jetton_p90 = None
    if own:
        source.append("history")
        for asset, values in own.items():
            per[asset] = per.get(asset, 0) + percentile(values, 50)
        if "USDT" in own:
            jetton_p90 = percentile(own["USDT"], 90)
    if common:
        fit = shared_fee_fit(list(common.values()))
        if fit is not None and fit[1] >= m:
            overhead, per_request_payout = fit
            for asset in per:  # the part of the common fee each payout adds, beyond m
                per[asset] += per_request_payout - m
            source.append("fit")
        else:
            overhead = percentile([max(0, fee - n * m) for fee, n in common.values()], 50)
    if overhead is None and not per:
        return None, "none"
    return FeeModel(overhead or 0, per, jetton_p90), "+".join(source)


def shared_fee_fit(requests: Sequence[tuple[int, int]]) -> tuple[int, int] | None:
    """(a, b) of common_fee = a + b x size over our requests (common fee, size), or None
    while they do not have two sizes. Robust to odd requests (the one that deployed the
    wallet): the median common fee of each size, then the Theil-Sen line through those
    (slope = median of the pairwise slopes, a = median of fee - slope x size)."""
    by_size: dict[int, list[int]] = {}
    for fee, size in requests:
        by_size.setdefault(max(size, 1), []).append(fee)
    points = sorted((n, percentile(fees, 50)) for n, fees in by_size.items())
    if len(points) < 2:
        return None
    slopes = sorted(
        (c2 - c1) / (n2 - n1) for i, (n1, c1) in enumerate(points) for n2, c2 in points[i + 1 :]
    )
    slope = slopes[(len(slopes) - 1) // 2]
    if slope < 0:
        return None
    a = sorted(c - slope * n for n, c in points)[(len(points) - 1) // 2]
    return max(0, round(a)), round(slope)


def history_stats(
    samples: Sequence[FeeSample], paid: Sequence[repo.PaidTransfer], settings: Settings
) -> tuple[dict[str, FeeStats | None], dict[str, bool]]:
    """p50/p90/EWMA per kind over the window, and whether the latest is unusually high."""
    series: dict[str, list[int]] = {k: [] for k in (*ESTIMATE_KINDS, *PAID_KINDS)}
    for s in samples:
        if s.fee_ton_single is not None:
            series["ton_transfer_alone"].append(s.fee_ton_single)
        if s.fee_usdt_single is not None:
            series["usdt_transfer_alone"].append(s.fee_usdt_single)
        if s.fee_ton_batch is not None:
            series["ton_batch_per_payout"].append(s.fee_ton_batch // max(s.batch_size, 1))
    for t in paid:
        series["ton_paid" if t.asset == "TON" else "usdt_paid"].append(t.fee)
    stats = {k: fee_stats(v, settings.fees_ewma_alpha) for k, v in series.items()}
    high = {
        k: st is not None
        and unusually_high(st.latest, st, settings.fees_high_factor, settings.fees_high_min_samples)
        for k, st in stats.items()
    }
    return stats, high


def arrival_rates(found: repo.Arrivals, now: datetime) -> dict[tuple[str, str], float]:
    """Payouts arriving per second, by (asset, priority), from those created in the window.

    The rate is measured from the oldest of them to now, over at least ARRIVAL_MIN_SPAN_S:
    (N - 1) arrivals in that span (the first one opens it). So one payout every 20 s reads
    0.05/s whatever the window, a lone payout reads 0 (nothing else is expected), a few
    posted together do not read as a stream, and the rate falls as the time since the last
    arrival grows. The total is shared among the keys by their counts."""
    total = sum(found.counts.values())
    if total < 2 or found.oldest is None:
        return {key: 0.0 for key in found.counts}
    span = max((now - found.oldest).total_seconds(), ARRIVAL_MIN_SPAN_S)
    rate = (total - 1) / span
    return {key: rate * n / total for key, n in found.counts.items()}


async def load_conditions(db: Database, settings: Settings) -> FeeConditions:
    """Read the latest sample, the fee history and the queue (one read transaction)."""
    now = clock.now()
    since = now - timedelta(seconds=settings.fees_history_seconds)
    async with db.transaction() as session:
        latest = await repo.latest_sample(session)
        samples = await repo.samples_since(session, since)
        paid = await repo.paid_transfers(session, since)
        queued = await repo.queued_by_priority(session)
        arrived = await repo.arrivals_since(
            session, now - timedelta(seconds=settings.fees_arrival_window_seconds)
        )
    estimate = next((s for s in reversed(samples) if s.fee_ton_single is not None), None)
    model, source = fee_model(estimate, paid)
    stats, high = history_stats(samples, paid, settings)
    congestion = None
    latency = None
    if latest is not None:
        congestion = latest.congestion_bp / 100 if latest.congestion_bp is not None else None
        latency = latest.latency_ms
    return FeeConditions(
        now,
        latest,
        congestion,
        latency,
        model,
        source,
        stats,
        high,
        queued,
        arrival_rates(arrived, now),
    )


# A field-by-field copy into the policy's input: alike other views in shape only.
def facts_of(p: Payment) -> PayoutFacts:
    return PayoutFacts(
        payment_id=p.id,
        priority=p.priority,
        asset=p.asset,
        amount=p.amount,
        queued_at=p.created_at,
        target_seconds=p.target_confirmation_seconds or None,
    )


async def decide_for_batch(
    session: AsyncSession,
    conditions: FeeConditions,
    settings: Settings,
    payouts: Sequence[Payment],
    *,
    jetton_attach_cap: int = 0,
) -> dict[str, FeeDecision]:
    """The optimizer's decision for each payout, stored with its inputs (in `session`).

    Pure policy plus one upsert a payout; calling it every round is fine (a decision is
    replaced and its `revisions` counted)."""
    policy = policy_of(settings, jetton_attach_cap)
    cond = Conditions(
        now=clock.now(),
        congestion_pct=conditions.congestion_pct,
        latency_ms=conditions.latency_ms,
        fees=conditions.model,
        fee_spike=conditions.fee_spike,
        queued_payouts=max(conditions.queued_total, len(payouts)),
        arrivals_per_s=conditions.arrivals,
    )
    out: dict[str, FeeDecision] = {}
    rows = []
    for p in payouts:
        facts = facts_of(p)
        d = decide(facts, cond, policy)
        out[p.id] = d
        rows.append(_record_values(facts, cond, conditions, d))
    await repo.upsert_decisions(session, rows)
    return out


def _record_values(
    facts: PayoutFacts, cond: Conditions, known: FeeConditions, d: FeeDecision
) -> dict[str, object]:
    inputs: dict[str, Any] = {
        "latency_ms": cond.latency_ms,
        "queued_payouts": cond.queued_payouts,
        "arrivals_per_min": round(cond.arrival_rate * 60, 2),
        "fee_spike": cond.fee_spike,
        "fee_model_source": known.model_source,
        "sample_id": known.sample.id if known.sample is not None else None,
    }
    if cond.fees is not None:
        inputs["fee_model"] = {
            "overhead": cond.fees.overhead,
            "per_payout": dict(cond.fees.per_payout),
            "jetton_spend_p90": cond.fees.jetton_spend_p90,
        }
    return {
        "payment_id": facts.payment_id,
        "decided_at": cond.now,
        "priority": facts.priority,
        "asset": facts.asset,
        "amount": facts.amount,
        "target_seconds": int((d.deadline - facts.queued_at).total_seconds()),
        "congestion_bp": round(cond.congestion_pct * 100)
        if cond.congestion_pct is not None
        else None,
        "inputs": inputs,
        **_schedule_of(d),
        "expected_fee": d.expected_fee_nanoton,
        "alone_fee": d.alone_fee_nanoton,
        "reasons": list(d.reasons),
    }


async def record_outcome(
    session: AsyncSession,
    payment_id: str,
    outcome: str,
    *,
    fee_paid: int | None = None,
    queued_at: datetime | None = None,
    confirmed_at: datetime | None = None,
) -> bool:
    """What happened to a decided payout: `confirmed` (with its fee in nanoton and the time
    from queued to confirmed), `failed` or `diverted`. False when no decision was stored."""
    confirm_ms = None
    if queued_at is not None and confirmed_at is not None:
        confirm_ms = max(0, int((confirmed_at - queued_at).total_seconds() * 1000))
    result = await session.execute(
        update(FeeDecisionRecord)
        .where(FeeDecisionRecord.payment_id == payment_id)
        .values(
            outcome=outcome,
            fee_paid=fee_paid,
            confirm_ms=confirm_ms,
            outcome_at=confirmed_at or clock.now(),
        )
    )
    return bool(getattr(result, "rowcount", 0))


@dataclass(frozen=True, slots=True)
class Confirmed:
    """A payout confirmed on chain, for `record_confirmed`."""

    payment_id: str
    fee_paid: int  # nanoton
    queued_at: datetime
    confirmed_at: datetime


async def record_confirmed(session: AsyncSession, confirmed: Sequence[Confirmed]) -> None:
    """`record_outcome(..., "confirmed", ...)` for many payouts in one statement (a payout
    without a stored decision is skipped, as there)."""
    if not confirmed:
        return
    table = cast(Table, FeeDecisionRecord.__table__)
    await session.execute(
        update(table)
        .where(table.c.payment_id == bindparam("b_payment_id"))
        .values(
            outcome="confirmed",
            fee_paid=bindparam("b_fee_paid"),
            confirm_ms=bindparam("b_confirm_ms"),
            outcome_at=bindparam("b_outcome_at"),
        ),
        [
            {
                "b_payment_id": c.payment_id,
                "b_fee_paid": c.fee_paid,
                "b_confirm_ms": max(0, int((c.confirmed_at - c.queued_at).total_seconds() * 1000)),
                "b_outcome_at": c.confirmed_at,
            }
            for c in confirmed
        ],
    )


# What a decision says about sending, under the same names in the policy's FeeDecision and
# the stored FeeDecisionRecord.
_SCHEDULE = (
    "send_at",
    "send_by",
    "batch_window_ms",
    "batch_max",
    "jetton_attach_nanoton",
    "divert_reason",
)


def _schedule_of(d: FeeDecision | FeeDecisionRecord) -> dict[str, Any]:
    return {name: getattr(d, name) for name in _SCHEDULE}


def decision_view(d: FeeDecisionRecord) -> dict[str, Any]:
    """A stored decision as the API shows it (fees as nanoton integers)."""
    return {
        "payment_id": d.payment_id,
        "decided_at": d.decided_at,
        "revisions": d.revisions,
        "priority": d.priority,
        "asset": d.asset,
        "congestion_pct": d.congestion_bp / 100 if d.congestion_bp is not None else None,
        **_schedule_of(d),
        "expected_fee_nanoton": d.expected_fee,
        "alone_fee_nanoton": d.alone_fee,
        "reasons": list(d.reasons or []),
        "outcome": d.outcome,
        "fee_paid_nanoton": d.fee_paid,
        "confirm_ms": d.confirm_ms,
    }


async def fees_status(db: Database, settings: Settings, account_id: str | None) -> dict[str, Any]:
    """Congestion, current fee estimates per kind, the queue by priority, recent decisions
    (of `account_id`'s payouts) and what the optimizer saved against sending alone."""
    cond = await load_conditions(db, settings)
    since = cond.at - timedelta(seconds=settings.fees_history_seconds)
    async with db.transaction() as session:
        decisions = await repo.recent_decisions(session, account_id, settings.fees_status_decisions)
        config = await repo.latest_config(session)
        saved = await repo.savings(session, account_id, since)
    s = cond.sample
    return {
        "object": "fees.status",
        "at": cond.at,
        "sampled_at": s.sampled_at if s is not None else None,
        "congestion": {
            "pct": cond.congestion_pct,
            "raw_pct": s.congestion_raw_bp / 100
            if s is not None and s.congestion_raw_bp is not None
            else None,
            "latency_ms": s.latency_ms if s is not None else None,
            "queue_size": s.queue_size if s is not None else None,
            "api_calls": s.api_calls if s is not None else 0,
            "api_errors": s.api_errors if s is not None else 0,
            "api_rate_limited": s.api_rate_limited if s is not None else 0,
            "unavailable": dict(s.unavailable or {}) if s is not None else {"sample": "none yet"},
        },
        "config_params": {
            k: {n: v for n, v in p.items() if n != "boc"}
            for k, p in (config or {}).items()
            if isinstance(p, dict)
        },
        "fees": {
            kind: {
                "count": st.count,
                "latest": st.latest,
                "p50": st.p50,
                "p90": st.p90,
                "ewma": st.ewma,
                "unusually_high": cond.high.get(kind, False),
            }
            if st is not None
            else None
            for kind, st in cond.stats.items()
        },
        "fee_model": {
            "source": cond.model_source,
            "overhead_nanoton": cond.model.overhead,
            "per_payout_nanoton": dict(cond.model.per_payout),
            "jetton_spend_p90_nanoton": cond.model.jetton_spend_p90,
        }
        if cond.model is not None
        else None,
        "queue": {p: cond.queued.get(p, 0) for p in ("urgent", "normal", "low")},
        "arrivals_per_min": {
            f"{asset}/{priority}": round(rate * 60, 2)
            for (asset, priority), rate in sorted(cond.arrivals.items())
        },
        "decisions": [decision_view(d) for d in decisions],
        "savings": {
            "payouts": saved.payouts,
            "fee_paid_nanoton": saved.fee_paid,
            "alone_fee_nanoton": saved.alone_fee,
            "saved_nanoton": saved.alone_fee - saved.fee_paid,
        },
    }


def fee_decision_out(d: FeeDecisionRecord) -> FeeDecisionOut:
    """The `fee_decision` field of a payout in the API."""
    view = decision_view(d)
    for key in ("payment_id", "priority", "asset"):
        view.pop(key)
    return FeeDecisionOut(**view)


async def fee_decisions_for(
    session: AsyncSession, payment_ids: Sequence[str]
) -> dict[str, FeeDecisionOut]:
    """`fee_decision` of each payout that has one, for PaymentOut.of(..., fee_decision=...)."""
    found = await repo.decisions_for(session, payment_ids)
    return {pid: fee_decision_out(d) for pid, d in found.items()}
