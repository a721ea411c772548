"""The fee optimizer's pure rules: policy, congestion, fee statistics."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from tonrail.fees.policy import (
    DEFAULT_TARGET_SECONDS,
    MAX_WAIT_MS,
    Conditions,
    CongestionScale,
    CongestionSignals,
    FeeModel,
    FeePolicy,
    PayoutFacts,
    company_wait_ms,
    decide,
    fee_stats,
    jetton_attach_retry,
    percentile,
    raw_congestion,
    smooth_congestion,
    unusually_high,
)

T0 = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
POLICY = FeePolicy()
MODEL = FeeModel(overhead=4_000_000, per_payout={"TON": 1_000_000, "USDT": 12_000_000},
                 jetton_spend_p90=14_000_000)  # fmt: skip

priorities = st.sampled_from(["urgent", "normal", "low"])
assets = st.sampled_from(["TON", "USDT"])
amounts = st.integers(min_value=0, max_value=10**24)
congestion = st.one_of(st.none(), st.floats(min_value=0, max_value=100))
latency = st.one_of(st.none(), st.integers(min_value=0, max_value=120_000))
models = st.one_of(
    st.none(),
    st.builds(
        FeeModel,
        overhead=st.integers(0, 10**9),
        per_payout=st.fixed_dictionaries(
            {"TON": st.integers(0, 10**9), "USDT": st.integers(0, 10**9)}
        ),
        jetton_spend_p90=st.one_of(st.none(), st.integers(0, 10**9)),
    ),
)


rates = st.dictionaries(
    st.tuples(assets, priorities), st.floats(min_value=0, max_value=1_000), max_size=6
)
STEADY = {("TON", "normal"): 1.0}  # a payout a second


def facts(priority: str = "normal", asset: str = "TON", amount: int = 10**9) -> PayoutFacts:
    return PayoutFacts("pay_1", priority, asset, amount, queued_at=T0)


@given(
    priority=priorities,
    asset=assets,
    amount=amounts,
    cong=congestion,
    lat=latency,
    model=models,
    spike=st.booleans(),
    queued=st.integers(0, 1000),
    elapsed_ms=st.integers(0, 4_000_000),
    arrivals=rates,
    value=st.integers(0, 10**8),
)
def test_a_reachable_target_is_never_planned_to_be_missed(
    priority: str,
    asset: str,
    amount: int,
    cong: float | None,
    lat: int | None,
    model: FeeModel | None,
    spike: bool,
    queued: int,
    elapsed_ms: int,
    arrivals: dict[tuple[str, str], float],
    value: int,
) -> None:
    now = T0 + timedelta(milliseconds=elapsed_ms)
    cond = Conditions(now, cong, lat, model, spike, queued, arrivals)
    d = decide(facts(priority, asset, amount), cond, replace(POLICY, value_of_time=value))
    used_latency = lat if lat is not None else POLICY.assumed_latency_ms
    assert d.deadline == T0 + timedelta(seconds=DEFAULT_TARGET_SECONDS[priority])
    assert d.batch_window_ms >= 0
    assert d.batch_window_ms <= POLICY.window_max_ms[priority]
    assert d.send_at >= T0
    if d.send_at > T0:  # held: only while the whole plan still fits before the deadline
        assert priority != "urgent"
        assert d.send_at > now
        assert d.send_by + timedelta(milliseconds=used_latency) <= d.deadline
    if DEFAULT_TARGET_SECONDS[priority] * 1000 >= used_latency:
        assert d.send_by + timedelta(milliseconds=used_latency) <= d.deadline
    assert (lat is None) == ("latency_assumed" in d.reasons)


@given(asset=assets, amount=amounts, model=models, cong=congestion, lat=latency)
def test_urgent_payouts_are_never_held(
    asset: str, amount: int, model: FeeModel | None, cong: float | None, lat: int | None
) -> None:
    d = decide(facts("urgent", asset, amount), Conditions(T0, cong, lat, model, True, 1), POLICY)
    assert d.send_at == T0
    assert d.batch_window_ms <= POLICY.window_max_ms["urgent"]


@given(model=models, amount=amounts)
def test_jetton_attach_covers_the_observed_spend_and_ton_attaches_nothing(
    model: FeeModel | None, amount: int
) -> None:
    cond = Conditions(T0, 0.0, 1000, model)
    ton = decide(facts("normal", "TON", amount), cond, POLICY)
    usdt = decide(facts("normal", "USDT", amount), cond, POLICY)
    assert ton.jetton_attach_nanoton == 0
    assert usdt.jetton_attach_nanoton > POLICY.jetton_forward
    if model is None or model.jetton_spend_p90 is None:
        assert usdt.jetton_attach_nanoton == POLICY.jetton_attach_default
    else:
        assert usdt.jetton_attach_nanoton >= model.jetton_spend_p90 * 2 + POLICY.jetton_forward
        assert usdt.jetton_attach_nanoton >= POLICY.jetton_attach_min


def test_jetton_attach_is_capped() -> None:
    policy = FeePolicy(jetton_attach_cap=20_000_000)
    d = decide(facts("normal", "USDT"), Conditions(T0, 0.0, 1000, MODEL), policy)
    assert d.jetton_attach_nanoton == 20_000_000
    assert "jetton_attach_cap" in d.reasons


@given(model=models, n=st.integers(1, 254))
def test_batching_never_costs_more_than_sending_alone(model: FeeModel | None, n: int) -> None:
    d = decide(facts("low", "TON"), Conditions(T0, 0.0, 1000, model, queued_payouts=n), POLICY)
    if model is None:
        assert d.expected_fee_nanoton is None and "fee_unknown" in d.reasons
    else:
        assert d.expected_fee_nanoton is not None and d.alone_fee_nanoton is not None
        assert d.expected_fee_nanoton <= d.alone_fee_nanoton


def test_empty_history_sends_with_defaults_and_says_so() -> None:
    d = decide(facts("normal", "USDT", 5 * 10**6), Conditions(T0), POLICY)
    assert d.send_at == T0
    assert d.divert_reason is None
    assert d.expected_fee_nanoton is None
    assert d.jetton_attach_nanoton == POLICY.jetton_attach_default
    assert {"latency_assumed", "fee_unknown", "jetton_attach_default_no_history"} <= set(d.reasons)


def test_congestion_zero_batches_without_holding() -> None:
    cond = Conditions(T0, 0.0, 1000, MODEL, queued_payouts=3, arrivals_per_s=STEADY)
    d = decide(facts("low"), cond, replace(POLICY, value_of_time=0))
    assert d.send_at == T0
    assert d.batch_window_ms == POLICY.window_max_ms["low"]
    assert "waiting_is_free" in d.reasons
    assert d.divert_reason is None


# ---------------------------------------------------------------- waiting only when it pays
@given(
    priority=priorities,
    model=models,
    cong=congestion,
    lat=latency,
    queued=st.integers(0, 1000),
    elapsed_ms=st.integers(0, 4_000_000),
    value=st.integers(0, 10**8),
    keys=st.lists(st.tuples(assets, priorities), max_size=6),
)
def test_never_waits_when_no_arrival_is_expected(
    priority: str,
    model: FeeModel | None,
    cong: float | None,
    lat: int | None,
    queued: int,
    elapsed_ms: int,
    value: int,
    keys: list[tuple[str, str]],
) -> None:
    """No arrival expected (no rate, or every rate 0): due at once unless held for
    congestion, and then it waits for nothing once the hold ends."""
    now = T0 + timedelta(milliseconds=elapsed_ms)
    cond = Conditions(now, cong, lat, model, False, queued, dict.fromkeys(keys, 0.0))
    d = decide(facts(priority), cond, replace(POLICY, value_of_time=value))
    assert "no_arrivals_expected" in d.reasons
    if d.send_at > T0:  # held for congestion
        assert d.batch_window_ms == 0
    else:
        assert d.send_by <= now


@given(
    priority=priorities,
    overhead=st.integers(1, 10**8),
    rate=st.floats(min_value=0.001, max_value=1_000),
    value=st.integers(1, 10**7),
    queued=st.integers(1, 253),
)
def test_waits_exactly_while_the_expected_saving_beats_the_value_of_time(
    priority: str, overhead: int, rate: float, value: int, queued: int
) -> None:
    """Steady traffic, a fresh payout, a measured latency, no congestion: it waits iff
    rate x overhead > queued x value, and then until queued + rate x t reach overhead x
    rate / value (or its cap)."""
    model = FeeModel(overhead, {"TON": 1_000_000})
    cond = Conditions(T0, 0.0, 1_000, model, False, queued, {("TON", "low"): rate})
    policy = replace(POLICY, value_of_time=value)
    d = decide(facts(priority), cond, policy)
    pays = rate * overhead > queued * value
    assert (d.send_by > T0) == pays
    assert ("waiting_pays" in d.reasons) == pays
    if pays:
        t = overhead / value - queued / rate
        cap = min(int((DEFAULT_TARGET_SECONDS[priority] * 1000 - 1000) * 0.5),
                  POLICY.window_max_ms[priority])  # fmt: skip
        assert d.batch_window_ms == min(cap, MAX_WAIT_MS, max(1, -int(-t * 1000 // 1)))


@given(
    overhead=st.integers(1, 10**8),
    rate=st.floats(min_value=0.001, max_value=1_000),
    value=st.integers(1, 10**7),
    fewer=st.integers(1, 253),
    more=st.integers(1, 253),
)
def test_more_company_waiting_never_means_waiting_longer(
    overhead: int, rate: float, value: int, fewer: int, more: int
) -> None:
    fewer, more = sorted((fewer, more))
    model = FeeModel(overhead, {"TON": 1})
    policy = replace(POLICY, value_of_time=value)
    waits = [
        company_wait_ms(Conditions(T0, 0.0, 1000, model, False, n, {("TON", "low"): rate}), policy)
        for n in (fewer, more)
    ]
    assert waits[0][0] >= waits[1][0]


def test_steady_traffic_holds_and_a_trickle_goes_at_once() -> None:
    """The fee benchmark's two regimes with the default value of time (150k nanoton/s) and
    the local network's shared fee under today's mainnet config (~0.69M nanoton a request):
    a payout a second waits for company (a handful of payouts), one every 20 s goes at
    once."""
    model = FeeModel(690_000, {"TON": 40_000})
    policy = FeePolicy()
    steady = decide(facts("normal"), Conditions(T0, 0.0, 1_000, model, False, 1, STEADY), policy)
    assert steady.send_by > T0 and "waiting_pays" in steady.reasons
    assert steady.batch_window_ms == 3_600  # 0.69M / 150k - 1 / 1 s
    trickle = Conditions(T0, 0.0, 1_000, model, False, 1, {("TON", "normal"): 0.05})
    for priority in ("urgent", "normal", "low"):
        d = decide(facts(priority), trickle, policy)
        assert d.send_by == T0 and "waiting_does_not_pay" in d.reasons
    # once 5 wait, waiting no longer pays at a payout a second (5 x 150k >= 0.69M)
    full = decide(facts("normal"), Conditions(T0, 0.0, 1_000, model, False, 5, STEADY), policy)
    assert full.send_by == T0


def test_without_a_fee_estimate_waiting_is_not_priced_and_it_goes() -> None:
    d = decide(facts("low"), Conditions(T0, 0.0, 1_000, None, False, 1, STEADY), POLICY)
    assert d.send_by == T0 and "waiting_unpriced" in d.reasons


def test_a_payout_claimed_late_is_due_at_once() -> None:
    later = T0 + timedelta(seconds=20)
    d = decide(facts("urgent"), Conditions(later, 0.0, 1_000, MODEL, False, 1), POLICY)
    assert d.send_by <= later and d.batch_window_ms == 7_000  # half of (15 s - 1 s): its cap


def test_congestion_100_holds_low_and_diverts_a_late_urgent_payout() -> None:
    low = decide(facts("low"), Conditions(T0, 100.0, 20_000, MODEL), POLICY)
    assert low.send_at == T0 + timedelta(seconds=POLICY.hold_step_s)
    assert "hold_congestion" in low.reasons
    urgent = decide(facts("urgent"), Conditions(T0, 100.0, 20_000, MODEL), POLICY)
    assert urgent.send_at == T0
    assert urgent.divert_reason == "target_unreachable_congested"
    # a measured latency within the target keeps it on TON, however congested
    assert (
        decide(facts("urgent"), Conditions(T0, 100.0, 3_000, MODEL), POLICY).divert_reason is None
    )


def test_a_hold_never_outlasts_the_target() -> None:
    near_deadline = T0 + timedelta(seconds=3590)
    d = decide(facts("low"), Conditions(near_deadline, 100.0, 20_000, MODEL), POLICY)
    assert d.send_at == T0  # no time left to hold: goes with the next batch
    assert "hold_congestion" not in d.reasons
    assert "target_at_risk" in d.reasons


def test_fee_spike_holds_normal_not_urgent() -> None:
    normal = decide(facts("normal"), Conditions(T0, 0.0, 1000, MODEL, fee_spike=True), POLICY)
    assert normal.send_at > T0 and "hold_fee_spike" in normal.reasons
    assert normal.send_by + timedelta(milliseconds=1000) <= normal.deadline
    urgent = decide(facts("urgent"), Conditions(T0, 0.0, 1000, MODEL, fee_spike=True), POLICY)
    assert urgent.send_at == T0


def test_amount_smaller_than_the_fee_is_diverted() -> None:
    # 1 nanoton TON payout; the fee is millions of nanoton
    d = decide(facts("normal", "TON", 1), Conditions(T0, 0.0, 1000, MODEL), POLICY)
    assert d.divert_reason == "fee_above_amount_share"
    zero = decide(facts("normal", "USDT", 0), Conditions(T0, 0.0, 1000, MODEL), POLICY)
    assert zero.divert_reason == "fee_above_amount_share"


@given(amount=st.integers(10**15, 10**30), asset=assets)
def test_huge_amounts_stay_on_ton(amount: int, asset: str) -> None:
    d = decide(facts("normal", asset, amount), Conditions(T0, 10.0, 1000, MODEL), POLICY)
    assert d.divert_reason is None


def test_fee_above_the_usd_limit_is_diverted() -> None:
    expensive = FeeModel(overhead=0, per_payout={"TON": 300_000_000})  # 0.3 TON = $1.50
    d = decide(facts("normal", "TON", 10**15), Conditions(T0, 0.0, 1000, expensive), POLICY)
    assert d.divert_reason == "fee_above_usd_limit"
    off = FeePolicy(max_fee_usd_micro=0, max_fee_share_bp=0)
    assert (
        decide(facts("normal", "TON", 1), Conditions(T0, 0.0, 1000, expensive), off).divert_reason
        is None
    )


def test_a_full_queue_goes_at_once() -> None:
    d = decide(facts("low"), Conditions(T0, 0.0, 1000, MODEL, queued_payouts=254), POLICY)
    assert d.batch_window_ms == 0 and d.send_by == T0


def test_explicit_target_overrides_the_priority_default() -> None:
    d = decide(
        PayoutFacts("p", "low", "TON", 10**9, T0, target_seconds=30),
        Conditions(T0, 0.0, 1000, MODEL, arrivals_per_s=STEADY),
        replace(POLICY, value_of_time=0),
    )
    assert d.deadline == T0 + timedelta(seconds=30)
    assert d.batch_window_ms == 14_500


# ---------------------------------------------------------------- congestion
SCALE = CongestionScale()
opt_int = st.one_of(st.none(), st.integers(0, 10**7))


@given(lat=opt_int, queue=opt_int, calls=st.integers(0, 100), errors=st.integers(0, 100))
def test_raw_congestion_is_a_percentage_or_unknown(
    lat: int | None, queue: int | None, calls: int, errors: int
) -> None:
    raw = raw_congestion(CongestionSignals(lat, queue, calls, min(errors, calls)), SCALE)
    if lat is None and queue is None and calls == 0:
        assert raw is None
    else:
        assert raw is not None and 0.0 <= raw <= 100.0


@given(a=st.integers(0, 10**6), b=st.integers(0, 10**6), queue=opt_int)
def test_more_latency_never_means_less_congestion(a: int, b: int, queue: int | None) -> None:
    lo, hi = sorted((a, b))
    low = raw_congestion(CongestionSignals(lo, queue), SCALE)
    high = raw_congestion(CongestionSignals(hi, queue), SCALE)
    assert low is not None and high is not None and low <= high


def test_congestion_edges() -> None:
    assert raw_congestion(CongestionSignals(None, None), SCALE) is None
    assert raw_congestion(CongestionSignals(500, 3), SCALE) == 0.0
    assert raw_congestion(CongestionSignals(60_000, None), SCALE) == 100.0
    assert raw_congestion(CongestionSignals(None, 10**6), SCALE) == 100.0
    assert raw_congestion(CongestionSignals(16_000, None), SCALE) == 50.0
    # the API failing half the time, nothing else known: 0.5 x 50 %
    assert raw_congestion(CongestionSignals(None, None, 10, 5), SCALE) == 25.0


@given(
    prev=st.one_of(st.none(), st.floats(0, 100)),
    raw=st.one_of(st.none(), st.floats(0, 100)),
    dt=st.floats(0, 10_000),
    tau=st.floats(0, 1_000),
)
def test_smoothing_stays_between_previous_and_raw(
    prev: float | None, raw: float | None, dt: float, tau: float
) -> None:
    out = smooth_congestion(prev, raw, dt, tau)
    if raw is None:
        assert out == prev
    elif prev is None:
        assert out == raw
    else:
        assert out is not None
        assert min(prev, raw) - 1e-9 <= out <= max(prev, raw) + 1e-9


def test_smoothing_follows_a_step_with_the_time_constant() -> None:
    after_tau = smooth_congestion(0.0, 100.0, 30.0, 30.0)
    assert after_tau is not None and 63.0 < after_tau < 63.3
    assert smooth_congestion(0.0, 100.0, 0.0, 30.0) == 0.0


# ---------------------------------------------------------------- fee statistics
@given(st.lists(st.integers(0, 10**12), min_size=1, max_size=200), st.floats(0.01, 1.0))
def test_fee_stats_are_ordered_and_bounded(fees: list[int], alpha: float) -> None:
    s = fee_stats(fees, alpha)
    assert s is not None
    assert min(fees) <= s.p50 <= s.p90 <= max(fees)
    assert min(fees) <= s.ewma <= max(fees)
    assert s.count == len(fees) and s.latest == fees[-1]


def test_fee_stats_of_nothing_is_nothing() -> None:
    assert fee_stats([], 0.2) is None
    assert not unusually_high(10**12, None, 2.0, 1)


def test_percentile_nearest_rank() -> None:
    assert percentile([5, 1, 3, 2, 4], 50) == 3
    assert percentile(list(range(1, 11)), 90) == 9
    assert percentile([7], 90) == 7


def test_a_fee_spike_is_unusually_high() -> None:
    history = [5_000_000] * 30
    stats = fee_stats(history, 0.2)
    assert not unusually_high(6_000_000, stats, 2.0, 10)
    assert unusually_high(30_000_000, stats, 2.0, 10)
    assert not unusually_high(30_000_000, fee_stats(history[:5], 0.2), 2.0, 10)  # too little


@given(
    refused=st.integers(min_value=0, max_value=10**12),
    limit=st.integers(min_value=0, max_value=10**12),
)
def test_a_refused_jetton_attach_is_retried_with_more_and_never_above_the_limit(
    refused: int, limit: int
) -> None:
    attach = jetton_attach_retry(refused, limit)
    if attach is None:  # nothing more to try: the limit is reached
        assert min(2 * refused, limit) <= refused
    else:
        assert refused < attach <= limit and attach <= 2 * refused
        assert attach == min(2 * refused, limit)


def test_a_refused_jetton_attach_doubles_up_to_the_limit() -> None:
    assert jetton_attach_retry(15_000_000, 100_000_000) == 30_000_000
    assert jetton_attach_retry(60_000_000, 100_000_000) == 100_000_000
    assert jetton_attach_retry(100_000_000, 100_000_000) is None
    assert jetton_attach_retry(10_000_000, 5_000_000) is None  # the limit lowered since
