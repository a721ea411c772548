"""The alert rules as pure functions of a snapshot and thresholds."""

from __future__ import annotations

from datetime import UTC, datetime
from fractions import Fraction

from hypothesis import given
from hypothesis import strategies as st

from tonrail.monitoring.rules import (
    Thresholds,
    below_rate,
    books_mismatch,
    business_days_seconds,
    channel_failing,
    evaluate,
    failure_pattern,
    fee_unusually_high,
    gas_cap_exceeded,
    hot_wallet_low,
    is_stuck,
    payments_not_progressing,
    payments_stuck,
    payout_unknown,
    pending_high,
    rate_limiter_unavailable,
    rate_stale,
    stray_messages,
    subjects_to_lock,
    success_rate,
    suspicious_activity,
    toncenter_unreachable,
    worker_stale,
)
from tonrail.monitoring.snapshot import PendingPayment, SignalValue, Snapshot
from tonrail.settings import Settings

AT = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
T = Thresholds()


def snap(**fields: object) -> Snapshot:
    s = Snapshot(at=AT, window_seconds=300)
    for name, value in fields.items():
        setattr(s, name, value)
    return s


def sig(name: str, value: int, **labels: str) -> SignalValue:
    return SignalValue(name, labels, "gauge", value, AT)


@given(
    ok=st.integers(0, 10_000),
    bad=st.integers(0, 10_000),
    pct=st.floats(0, 100),
    sample=st.integers(0, 500),
)
def test_below_rate_is_exact_and_needs_the_sample(
    ok: int, bad: int, pct: float, sample: int
) -> None:
    total = ok + bad
    verdict = below_rate(ok, total, pct, sample)
    if total < max(sample, 1):
        assert not verdict
    else:
        assert verdict == (Fraction(ok, total) * 100 < Fraction(pct))


@given(st.integers(1, 19))
def test_small_samples_never_alert(total: int) -> None:
    # 1 failure of 2 (or everything failing under the minimum sample) is not an incident
    assert not below_rate(0, total, 95.0, 20)


def test_success_rate_overall_and_per_rail() -> None:
    s = snap(
        finished={"succeeded": 94, "failed": 6},
        attempts_finished={
            ("ton", "confirmed"): 50,
            ("ton", "failed"): 1,
            ("stripe", "failed"): 25,
        },
    )
    found = {f.dedup_key: f for f in success_rate(s, T)}
    assert set(found) == {"success_rate:all", "success_rate:stripe"}
    assert found["success_rate:all"].severity == "critical"
    assert "94.0 %" in found["success_rate:all"].summary
    assert success_rate(snap(finished={"succeeded": 95, "failed": 5}), T) == []


def test_pending_high_is_strictly_above_the_maximum() -> None:
    assert pending_high(snap(pending_count=100), T) == []
    [f] = pending_high(snap(pending_count=101), T)
    assert f.dedup_key == "pending_high" and f.details["pending"] == 101


def test_stuck_respects_the_payments_own_target() -> None:
    rows = [
        PendingPayment("pay_a", 181, 60, 0),  # stuck: past 3 minutes
        PendingPayment("pay_b", 500, 3600, 0),  # low priority with a 1 h target: not stuck
        PendingPayment("pay_c", 3601, 3600, 0),  # past its own target: stuck
    ]
    [f] = payments_stuck(snap(pending_old=rows), T)
    assert f.details["payment_ids"] == ["pay_a", "pay_c"]
    assert payments_stuck(snap(pending_old=[PendingPayment("p", 180, 60, 0)]), T) == []


def test_progress_looks_at_the_last_change_not_the_age() -> None:
    rows = [PendingPayment("pay_old_busy", 900, 60, 10), PendingPayment("pay_idle", 400, 60, 301)]
    [f] = payments_not_progressing(snap(pending_old=rows), T)
    assert f.details["payment_ids"] == ["pay_idle"]


def test_failure_patterns_are_per_rail_and_code() -> None:
    s = snap(
        failures_by_code={("ton", "bounced"): 5, ("ton", "timeout"): 4, ("stripe", "bounced"): 1}
    )
    assert [f.dedup_key for f in failure_pattern(s, T)] == ["failure_pattern:ton:bounced"]


@given(
    baseline=st.lists(st.integers(1, 10**9), min_size=20, max_size=60),
    factor=st.floats(1.1, 10),
)
def test_fee_high_only_when_the_recent_median_exceeds_the_factor(
    baseline: list[int], factor: float
) -> None:
    t = Thresholds(fee_factor=factor)
    ordered = sorted(baseline)
    median = (ordered[len(ordered) // 2] + ordered[(len(ordered) - 1) // 2]) / 2
    assert not fee_unusually_high([int(median)] * 3, baseline, t)
    assert fee_unusually_high([int(median * factor) + 1] * 3, baseline, t)
    assert not fee_unusually_high([10**12] * 3, baseline[:19], t)  # too little history


def test_suspicious_subjects_lock_once() -> None:
    s = snap(
        subject_failures={
            ("counterparty", "0:ab"): 10,
            ("api_key", "key_1"): 9,
            ("ip", "10.0.0.1"): 12,
        },
        lockouts={("ip", "10.0.0.1"): ("lock_1", 12)},
    )
    assert subjects_to_lock(s, T) == [("counterparty", "0:ab", 10)]
    [f] = suspicious_activity(s, T)
    assert f.dedup_key == "suspicious_activity:ip:10.0.0.1" and f.severity == "critical"


def test_hot_wallet_floor() -> None:
    t = Thresholds(hot_wallet_floors={"TON": 100 * 10**9})
    low = snap(signals=[sig("hot_wallet_balance", 99 * 10**9, asset="TON")])
    ok = snap(signals=[sig("hot_wallet_balance", 100 * 10**9, asset="TON")])
    assert [f.dedup_key for f in hot_wallet_low(low, t)] == ["hot_wallet_low:TON"]
    assert hot_wallet_low(ok, t) == [] and hot_wallet_low(snap(), t) == []
    assert hot_wallet_low(low, T) == []  # no floor configured


def test_worker_stale_ignores_retired_loops() -> None:
    s = snap(heartbeat_age={"expire_invoices": 61, "evaluate_alerts": 2, "old_loop": 90_000})
    assert [f.dedup_key for f in worker_stale(s, T)] == ["worker_stale:expire_invoices"]


def test_toncenter_unreachable_needs_recent_errors_and_no_success() -> None:
    now_ms = int(AT.timestamp() * 1000)
    down = snap(
        signals=[
            sig("toncenter_last_ok_ms", now_ms - 45_000, endpoint="runGetMethod"),
            sig("toncenter_last_error_ms", now_ms - 1_000, endpoint="runGetMethod"),
        ]
    )
    [f] = toncenter_unreachable(down, T)
    assert f.dedup_key == "toncenter_unreachable:runGetMethod"
    flaky = snap(
        signals=[
            sig("toncenter_last_ok_ms", now_ms - 2_000, endpoint="runGetMethod"),
            sig("toncenter_last_error_ms", now_ms - 1_000, endpoint="runGetMethod"),
        ]
    )
    assert toncenter_unreachable(flaky, T) == []
    never_ok = snap(signals=[sig("toncenter_last_error_ms", now_ms - 1_000, endpoint="x")])
    assert len(toncenter_unreachable(never_ok, T)) == 1
    old_error = snap(signals=[sig("toncenter_last_error_ms", now_ms - 60_000, endpoint="x")])
    assert toncenter_unreachable(old_error, T) == []  # no traffic since: not evidence


def test_bank_payouts_are_normal_for_their_business_days() -> None:
    """AT is Friday 2026-11-27 12:00 UTC; three business days after Wednesday noon end with
    Monday, after Monday morning with Thursday."""
    wednesday = 2 * 86_400  # age in seconds
    monday = 4 * 86_400 + 2 * 3600
    rows = [
        PendingPayment("bank_wed", wednesday, 60, wednesday, "bank"),
        PendingPayment("bank_mon", monday, 60, monday, "bank"),
        PendingPayment("ton_wed", wednesday, 60, wednesday, "ton"),
    ]
    for rule in (payments_stuck, payments_not_progressing):
        [f] = rule(snap(pending_old=rows), T)
        assert f.details["payment_ids"] == ["bank_mon", "ton_wed"]
    assert business_days_seconds(AT, 3) == (5 * 24 + 12) * 3600  # Fri noon -> Wed's end
    assert payments_stuck(snap(pending_old=rows), Thresholds(bank_business_days=5)) != []


def test_treasury_payouts_waiting_for_their_signers_are_not_stuck() -> None:
    """Their orders wait for people (and fail when they expire); a treasury payout whose
    order is not waiting for signers (being proposed, executed, or expired) still is."""
    day = 86_400.0
    rows = [
        PendingPayment("tr_signers", day, 60, day, "treasury", awaiting_signers=True),
        PendingPayment("tr_other", day, 60, day, "treasury"),
    ]
    for rule in (payments_stuck, payments_not_progressing):
        [f] = rule(snap(pending_old=rows), T)
        assert f.details["payment_ids"] == ["tr_other"]
    assert not is_stuck(rows[0], AT, T) and is_stuck(rows[1], AT, T)


def test_books_mismatch_opens_on_any_difference_and_names_it() -> None:
    differ = snap(
        signals=[
            sig("books_difference", -20_000_154, asset="TON"),
            sig("books_difference", 0, asset="USDT"),
        ]
    )
    [f] = books_mismatch(differ, T)
    assert (f.dedup_key, f.severity) == ("books_mismatch", "critical")
    assert f.details == {"differences": {"TON": -20_000_154}}
    assert "TON -20000154" in f.summary
    matched = snap(signals=[sig("books_difference", 0, asset="TON")])
    assert books_mismatch(matched, T) == [] and books_mismatch(snap(), T) == []


def test_rate_stale_and_gas_caps_each_alert_on_their_own_holds() -> None:
    held = snap(
        holds={"rate_stale": (2, ["pay_a", "pay_b"]), "gas_cap_jetton_attach": (1, ["pay_c"])}
    )
    [f] = rate_stale(held, T)
    assert (f.dedup_key, f.severity) == ("rate_stale", "critical")
    assert f.details == {"payouts": 2, "payout_ids": ["pay_a", "pay_b"]}
    [g] = gas_cap_exceeded(held, T)
    assert g.dedup_key == "gas_cap_exceeded:gas_cap_jetton_attach"
    assert rate_stale(snap(), T) == [] and gas_cap_exceeded(snap(), T) == []


def test_payout_unknown_opens_while_an_attempt_is_unknown() -> None:
    [f] = payout_unknown(snap(unknown_payouts=(3, ["pay_x"])), T)
    assert (f.dedup_key, f.severity) == ("payout_unknown", "critical")
    assert "resolve-unknown" in f.summary and f.details["payouts"] == 3
    assert payout_unknown(snap(), T) == []


def test_stray_messages_alert_within_the_window() -> None:
    now_ms = int(AT.timestamp() * 1000)
    last, total = sig("stray_message_last_ms", now_ms - 299_000), sig("stray_messages", 2)
    recent = snap(signals=[last, total])
    [f] = stray_messages(recent, T)
    assert f.severity == "critical" and f.details["total"] == 2
    old = snap(signals=[sig("stray_message_last_ms", now_ms - 301_000)])
    assert stray_messages(old, T) == [] and stray_messages(snap(), T) == []


def test_rate_limiter_unavailable_while_a_process_reports_redis_down() -> None:
    now_ms = int(AT.timestamp() * 1000)
    err, ok = "rate_limit_store_error_ms", "rate_limit_store_ok_ms"
    down = snap(
        signals=[
            sig(err, now_ms - 3_000, process="api-1:7"),
            sig(ok, now_ms - 60_000, process="api-1:7"),  # it had Redis before
            sig(err, now_ms - 2_000, process="api-2:9"),
            sig(ok, now_ms - 1_000, process="api-2:9"),  # back already
        ]
    )
    [f] = rate_limiter_unavailable(down, T)
    assert (f.dedup_key, f.severity, f.details) == (
        "rate_limiter_unavailable",
        "error",
        {"processes": ["api-1:7"]},
    )
    # A process that stopped reporting (gone, or no requests) long ago is no evidence.
    stale = snap(signals=[sig(err, now_ms - (T.rate_limiter_seconds + 1) * 1000, process="x")])
    assert rate_limiter_unavailable(stale, T) == []
    assert rate_limiter_unavailable(snap(), T) == []


def test_channel_failing() -> None:
    s = snap(deliveries_failed_recent={"slack": 1}, deliveries_retrying={"email": 1})
    assert [f.dedup_key for f in channel_failing(s, T)] == [
        "channel_failing:email",
        "channel_failing:slack",
    ]


def test_evaluate_gives_unique_keys_and_thresholds_come_from_settings() -> None:
    settings = Settings(_env_file=None, alert_pending_max=5, alert_hot_wallet_floor_usdt=7)  # type: ignore[call-arg]
    t = Thresholds.from_settings(settings)
    assert t.pending_max == 5 and t.hot_wallet_floors == {"USDT": 7}
    s = snap(pending_count=6, failures_by_code={("ton", "x"): 99})
    keys = [f.dedup_key for f in evaluate(s, t)]
    assert sorted(keys) == ["failure_pattern:ton:x", "pending_high"]


@given(
    st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2026, 3, 1)),
    st.integers(min_value=0, max_value=12 * 24 * 3600),
    st.integers(min_value=1, max_value=7),
)
def test_bank_cutoff_divides_bank_payouts_as_their_business_days_do(
    sent: datetime, waited: int, days: int
) -> None:
    """One instant divides the bank payouts still within their business days from the late
    ones (the dashboard counts them in SQL by it): a payout sent before it has waited past
    its days, one sent at or after it has not."""
    from datetime import timedelta

    from tonrail.monitoring.rules import bank_cutoff

    since = sent.replace(tzinfo=UTC)
    at = since + timedelta(seconds=waited)
    within = waited <= business_days_seconds(since, days)
    assert (since >= bank_cutoff(at, days)) == within
