"""The fee optimizer's rules: pure functions over plain data (no IO, no clock).

TON has no fee market: prices come from config params 20/21/24/25 and congestion shows as
inclusion delay and queue growth. So the optimizer controls how and when a payout goes out:
how long it may wait to share a batch (the request overhead is paid once per batch), whether
a low-priority payout is held while the network is congested or fees spiked, how much TON a
jetton transfer carries, and whether it should leave TON for a backup rail. docs/FEES.md
explains every formula here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

Priority = Literal["urgent", "normal", "low"]
PRIORITIES: tuple[Priority, ...] = ("urgent", "normal", "low")
DEFAULT_TARGET_SECONDS: Mapping[str, int] = {"urgent": 15, "normal": 60, "low": 3600}
NANOTON_PER_TON = 10**9
MICRO_PER_UNIT = {"TON": NANOTON_PER_TON, "USDT": 10**6}
MAX_WAIT_MS = 10**12  # "as long as the caps allow"


# ---------------------------------------------------------------- fee statistics
@dataclass(frozen=True, slots=True)
class FeeStats:
    """Fees of one kind (nanoton) over a window: sample count, p50, p90, EWMA, latest."""

    count: int
    p50: int
    p90: int
    ewma: int
    latest: int


def percentile(values: Sequence[int], q: float) -> int:
    """Nearest-rank percentile (q in 0..100) of a non-empty sequence."""
    if not values:
        raise ValueError("percentile of nothing")
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def fee_stats(fees: Sequence[int], alpha: float) -> FeeStats | None:
    """Statistics of `fees` given oldest first; None for an empty history (no invented fee)."""
    if not fees:
        return None
    if not 0 < alpha <= 1:
        raise ValueError("alpha must be in (0, 1]")
    ewma = float(fees[0])
    for fee in fees[1:]:
        ewma += alpha * (fee - ewma)
    return FeeStats(len(fees), percentile(fees, 50), percentile(fees, 90), round(ewma), fees[-1])


def unusually_high(fee: int, stats: FeeStats | None, factor: float, min_count: int) -> bool:
    """A fee above `factor` x the recent p90; never with fewer than `min_count` samples."""
    if stats is None or stats.count < min_count:
        return False
    return fee > factor * stats.p90


# ---------------------------------------------------------------- congestion
@dataclass(frozen=True, slots=True)
class CongestionSignals:
    """One sample's raw symptoms; None means the signal was not available this time."""

    latency_ms: int | None  # inclusion latency of our own recent messages (p90)
    queue_size: int | None  # outbound message queue, where the API offers it
    api_calls: int = 0  # toncenter calls the sampler made
    api_errors: int = 0  # of which failed (5xx, 429, timeouts)


@dataclass(frozen=True, slots=True)
class CongestionScale:
    """Where each symptom starts to count (ok) and where it means fully congested (full)."""

    # Typed fields with defaults: alike other config dataclasses in shape only.
    latency_ok_ms: int = 2_000
    latency_full_ms: int = 30_000
    queue_ok: int = 100
    queue_full: int = 5_000
    error_weight: float = 0.5


def _ramp(value: float, ok: float, full: float) -> float:
    if full <= ok:
        return 1.0 if value > ok else 0.0
    return min(max((value - ok) / (full - ok), 0.0), 1.0)


def raw_congestion(s: CongestionSignals, scale: CongestionScale) -> float | None:
    """Congestion 0-100 from one sample: the worst of the available symptoms.

    L = ramp(latency), Q = ramp(queue), E = error_weight x error share of API calls;
    raw = 100 x max(L, Q, E) over those available; None when none is available.
    """
    parts: list[float] = []
    if s.latency_ms is not None:
        parts.append(_ramp(s.latency_ms, scale.latency_ok_ms, scale.latency_full_ms))
    if s.queue_size is not None:
        parts.append(_ramp(s.queue_size, scale.queue_ok, scale.queue_full))
    if s.api_calls > 0:
        share = min(max(s.api_errors, 0) / s.api_calls, 1.0)
        parts.append(min(max(scale.error_weight, 0.0), 1.0) * share)
    if not parts:
        return None
    return 100.0 * max(parts)


def smooth_congestion(
    previous: float | None, raw: float | None, dt_seconds: float, tau_seconds: float
) -> float | None:
    """Time-aware EWMA: alpha = 1 - exp(-dt / tau). Rises at once when raw jumps to 100
    only after about tau; keeps the previous value when this sample had no signal."""
    if raw is None:
        return previous
    if previous is None or tau_seconds <= 0:
        return raw
    alpha = 1.0 - math.exp(-max(dt_seconds, 0.0) / tau_seconds)
    return previous + alpha * (raw - previous)


# ---------------------------------------------------------------- the payout policy
@dataclass(frozen=True, slots=True)
class FeeModel:
    """What a payout costs on TON, nanoton: a request's shared overhead plus a part per
    payout by asset. A payout in a batch of n pays per_payout[asset] + overhead / n."""

    overhead: int
    per_payout: Mapping[str, int]
    jetton_spend_p90: int | None = None  # TON a jetton transfer's trace really used (p90)

    def fee(self, asset: str, batch_size: int) -> int | None:
        per = self.per_payout.get(asset)
        if per is None:
            return None
        return per + -(-self.overhead // max(batch_size, 1))


@dataclass(frozen=True, slots=True)
class PayoutFacts:
    payment_id: str
    priority: str  # urgent | normal | low (unknown values are treated as normal)
    asset: str  # TON | USDT
    amount: int  # minor units of `asset`
    queued_at: datetime
    target_seconds: int | None = None  # None: DEFAULT_TARGET_SECONDS by priority


@dataclass(frozen=True, slots=True)
class Conditions:
    """The network as the sampler last saw it, and our own queue."""

    now: datetime
    congestion_pct: float | None = None  # None: unknown (no signal yet)
    latency_ms: int | None = None  # measured inclusion latency (p90); None: not measured
    fees: FeeModel | None = None  # None: no estimate and no history yet
    fee_spike: bool = False  # the current fee is unusually high against its history
    queued_payouts: int = 0  # payouts waiting for TON, this one included
    # recent arrival rate of payouts for TON, per second, by (asset, priority)
    arrivals_per_s: Mapping[tuple[str, str], float] = field(default_factory=dict)

    @property
    def arrival_rate(self) -> float:
        """Payouts arriving per second, all assets and priorities: any of them can share a
        request with the payouts waiting now."""
        return sum(max(r, 0.0) for r in self.arrivals_per_s.values())


@dataclass(frozen=True, slots=True)
class FeePolicy:
    """The operator's thresholds (settings.py FEES_*)."""

    ton_usd_micro: int = 5_000_000  # micro-USD per TON, to value fees and TON amounts
    max_fee_usd_micro: int = 1_000_000  # per payout; 0 = no limit
    max_fee_share_bp: int = 1_000  # of the payout's value; 0 = no limit
    batch_max: int = 254
    window_max_ms: Mapping[str, int] = field(
        default_factory=lambda: {"urgent": 10_000, "normal": 30_000, "low": 600_000}
    )
    window_share: float = 0.5  # of the slack a payout may spend waiting for a batch
    value_of_time: int = 150_000  # nanoton a payout's second of waiting is worth; 0 = free
    assumed_latency_ms: int = 5_000  # used, and said so, while latency is not measured
    hold_congestion_pct: Mapping[str, int] = field(
        default_factory=lambda: {"urgent": 101, "normal": 90, "low": 60}
    )
    hold_step_s: int = 60  # a held payout is looked at again after this long
    divert_congestion_pct: int = 50  # below this, a late payout stays on TON
    jetton_attach_default: int = 50_000_000  # with no history of jetton transfers
    jetton_attach_min: int = 50_000_000  # the jetton wallet refuses less (its own estimate)
    jetton_attach_margin_pct: int = 200  # of the observed p90 spend
    jetton_attach_cap: int = 0  # 0 = no cap
    jetton_forward: int = 1


@dataclass(frozen=True, slots=True)
class FeeDecision:
    """How and when one payout goes out.

    Not before `send_at`, and in a sent request by `send_by` = send_at + `batch_window_ms`
    (it waits that long for company), in a request of at most `batch_max` payouts.
    `divert_reason` set = the router should send it on a backup rail (when one exists).
    Fees are nanoton; None = no estimate available.
    """

    payment_id: str
    send_at: datetime
    batch_window_ms: int
    batch_max: int
    jetton_attach_nanoton: int
    divert_reason: str | None
    expected_fee_nanoton: int | None
    alone_fee_nanoton: int | None
    deadline: datetime
    reasons: tuple[str, ...] = ()

    @property
    def send_by(self) -> datetime:
        """The latest moment the payout should be in a sent request."""
        return self.send_at + timedelta(milliseconds=self.batch_window_ms)


def target_seconds(facts: PayoutFacts) -> int:
    if facts.target_seconds is not None and facts.target_seconds > 0:
        return facts.target_seconds
    return DEFAULT_TARGET_SECONDS.get(facts.priority, DEFAULT_TARGET_SECONDS["normal"])


def value_usd_micro(asset: str, amount: int, ton_usd_micro: int) -> int | None:
    """Value in micro-USD (USDT counted 1:1); None for an asset we cannot value."""
    if asset == "USDT":
        return amount
    if asset == "TON":
        return amount * ton_usd_micro // NANOTON_PER_TON
    return None


def jetton_attach(model: FeeModel | None, policy: FeePolicy) -> tuple[int, str]:
    """TON to attach to a jetton transfer: margin x the observed p90 spend plus the forward
    amount, at least the minimum, at most the cap; the excess comes back to the hot wallet."""
    if model is None or model.jetton_spend_p90 is None:
        attach, why = policy.jetton_attach_default, "jetton_attach_default_no_history"
    else:
        need = -(-model.jetton_spend_p90 * policy.jetton_attach_margin_pct // 100)
        attach, why = max(policy.jetton_attach_min, need + policy.jetton_forward), "jetton_attach"
    attach = max(attach, policy.jetton_forward + 1)
    if policy.jetton_attach_cap > 0 and attach > policy.jetton_attach_cap:
        attach, why = max(policy.jetton_attach_cap, policy.jetton_forward + 1), "jetton_attach_cap"
    return attach, why


def jetton_attach_retry(refused: int, limit: int) -> int | None:
    """TON to attach to a jetton transfer after our jetton wallet refused `refused` nanoton as
    too little: twice that, at most `limit` (FEES_JETTON_ATTACH_MAX_NANOTON, the gas cap);
    None when that is no more than what was refused (no retry can do better)."""
    attach = min(2 * refused, limit)
    return attach if attach > refused else None


def decide(facts: PayoutFacts, cond: Conditions, policy: FeePolicy) -> FeeDecision:
    """The optimizer's decision for one payout (docs/FEES.md, "Policy")."""
    reasons: list[str] = []
    priority = facts.priority if facts.priority in PRIORITIES else "normal"
    target = target_seconds(facts)
    deadline = facts.queued_at + timedelta(seconds=target)
    measured = cond.latency_ms is not None
    latency_ms = cond.latency_ms if cond.latency_ms is not None else policy.assumed_latency_ms
    if not measured:
        reasons.append("latency_assumed")
    remaining_ms = int((deadline - cond.now).total_seconds() * 1000)
    slack_ms = remaining_ms - latency_ms  # from now
    batch_max = max(1, policy.batch_max)

    # The longest it may wait for company, counted from when it was queued (so re-deciding
    # every round can never postpone it past this): a share of its whole slack, capped by
    # priority; 0 when the queue already fills a request.
    cap = policy.window_max_ms.get(priority, policy.window_max_ms.get("normal", 0))
    whole_slack_ms = target * 1000 - latency_ms
    longest_ms = max(0, min(int(whole_slack_ms * policy.window_share), max(cap, 0)))
    if cond.queued_payouts >= batch_max:
        longest_ms = 0
        reasons.append("batch_full")
    if slack_ms <= 0:
        reasons.append("target_at_risk")
    # Within that, it waits only while waiting pays (company_wait_ms).
    company_ms, why = company_wait_ms(cond, policy)
    reasons.append(why)

    # Hold non-urgent work while the network is congested or fees spiked, if time allows:
    # then send_at is later, and send_at + window + latency still fits before the deadline.
    send_at = facts.queued_at
    hold_pct = policy.hold_congestion_pct.get(priority, 101)
    congested = cond.congestion_pct is not None and cond.congestion_pct >= hold_pct
    held = False
    if (congested or cond.fee_spike) and priority != "urgent":
        hold_ms = min(policy.hold_step_s * 1000, slack_ms - longest_ms)
        if hold_ms > 0:
            held = True
            send_at = cond.now + timedelta(milliseconds=hold_ms)
            reasons.append("hold_congestion" if congested else "hold_fee_spike")
    if held:
        window_ms = min(company_ms, longest_ms)
    else:  # send_by = now + company_ms, at most queued_at + longest_ms
        waited_ms = max(0, int((cond.now - facts.queued_at).total_seconds() * 1000))
        window_ms = min(waited_ms + company_ms, longest_ms)

    # Fees: what it should cost in the batch we expect, and what it would cost alone.
    expected = alone = None
    if cond.fees is not None:
        batch_size = min(batch_max, max(1, cond.queued_payouts))
        expected = cond.fees.fee(facts.asset, batch_size)
        alone = cond.fees.fee(facts.asset, 1)
    else:
        reasons.append("fee_unknown")

    attach = 0
    if facts.asset == "USDT":
        attach, why = jetton_attach(cond.fees, policy)
        reasons.append(why)

    divert = _divert_reason(facts, cond, policy, expected, remaining_ms, measured)
    if divert is not None:
        reasons.append(divert)
    return FeeDecision(
        payment_id=facts.payment_id,
        send_at=send_at,
        batch_window_ms=window_ms,
        batch_max=batch_max,
        jetton_attach_nanoton=attach,
        divert_reason=divert,
        expected_fee_nanoton=expected,
        alone_fee_nanoton=alone,
        deadline=deadline,
        reasons=tuple(reasons),
    )


def company_wait_ms(cond: Conditions, policy: FeePolicy) -> tuple[int, str]:
    """How much longer the payouts waiting now should wait for company, in ms, and why.

    Over the next short while dt, a payout arrives with probability rate x dt (rate: recent
    arrivals per second) and then shares this request instead of paying a request's shared
    fee (`fees.overhead`, a) for its own: the expected saving is rate x a x dt. Waiting costs
    the n payouts waiting dt each: n x value_of_time x dt. So they wait while
    rate x a > n x value_of_time; as arrivals keep coming n grows by rate x t, and waiting
    stops paying after t = a / value_of_time - n / rate. Nothing expected to arrive, or no
    estimate of a: no wait. A value of time of 0 waits whenever an arrival is expected (the
    window caps in `decide` bound every wait)."""
    rate = cond.arrival_rate
    if rate <= 0:
        return 0, "no_arrivals_expected"
    if policy.value_of_time <= 0:
        return MAX_WAIT_MS, "waiting_is_free"
    if cond.fees is None:
        return 0, "waiting_unpriced"
    n = max(1, cond.queued_payouts)
    a = cond.fees.overhead
    if rate * a <= n * policy.value_of_time:
        return 0, "waiting_does_not_pay"
    seconds = a / policy.value_of_time - n / rate
    return min(MAX_WAIT_MS, max(1, math.ceil(seconds * 1000))), "waiting_pays"


def _divert_reason(
    facts: PayoutFacts,
    cond: Conditions,
    policy: FeePolicy,
    expected: int | None,
    remaining_ms: int,
    measured: bool,
) -> str | None:
    """Why the payout should leave TON, or None. Fee limits first, then a missed target."""
    if expected is not None:
        fee_usd = expected * policy.ton_usd_micro // NANOTON_PER_TON
        if policy.max_fee_usd_micro > 0 and fee_usd > policy.max_fee_usd_micro:
            return "fee_above_usd_limit"
        value = value_usd_micro(facts.asset, facts.amount, policy.ton_usd_micro)
        if policy.max_fee_share_bp > 0 and value is not None:
            # fee / value > share_bp / 10000, without division (value may be 0)
            if fee_usd * 10_000 > value * policy.max_fee_share_bp:
                return "fee_above_amount_share"
    if (
        measured
        and cond.latency_ms is not None
        and cond.latency_ms > remaining_ms
        and cond.congestion_pct is not None
        and cond.congestion_pct >= policy.divert_congestion_pct
    ):
        return "target_unreachable_congested"
    return None
