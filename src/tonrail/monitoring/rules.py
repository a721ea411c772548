"""Alert rules: pure functions from a metrics snapshot and thresholds to findings.

A finding is a condition that holds now; the alert store opens an alert for it (dedup key)
and resolves the alert once the finding is gone. Nothing here reads a clock or a database.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from fractions import Fraction
from typing import Any, Literal, Protocol

from tonrail.monitoring.signals import (
    BOOKS_DIFFERENCE,
    SCREENING_BLOCKED,
    STRAY_MESSAGE_LAST_MS,
    STRAY_MESSAGES,
)
from tonrail.monitoring.slo import BURN_WINDOWS, burn_rate
from tonrail.monitoring.snapshot import PendingPayment, Snapshot
from tonrail.payments.states import AttemptStatus, PaymentStatus
from tonrail.settings import Settings
from tonrail.states import GAS_CAP_HOLDS, HoldReason

Severity = Literal["critical", "error", "warning", "info"]
SEVERITIES: tuple[Severity, ...] = ("critical", "error", "warning", "info")


@dataclass(frozen=True)
class Thresholds:
    """Every threshold of the rules (from settings; see .env.example)."""

    # Typed fields with defaults; alike other config dataclasses in shape only.
    success_rate_min_pct: float = 95.0
    success_rate_min_sample: int = 20
    pending_max: int = 100
    stuck_seconds: int = 180
    progress_stale_seconds: int = 300
    failure_pattern_count: int = 5
    suspicious_failures: int = 10
    fee_factor: float = 3.0
    fee_min_baseline: int = 20
    fee_min_recent: int = 3
    hot_wallet_floors: dict[str, int] = field(default_factory=dict)
    heartbeat_stale_seconds: int = 60
    heartbeat_forget_seconds: int = 86_400
    toncenter_unreachable_seconds: int = 30
    rate_limiter_seconds: int = 60
    channel_retrying_max: int = 1  # deliveries retrying on one channel before it is "failing"
    bank_business_days: int = 3  # a bank transfer's normal time in `processing`
    slo_success_pct: float = 99.0  # the success objective (monitoring/slo.py)

    @classmethod
    def from_settings(cls, s: Settings) -> Thresholds:
        # A field per setting; alike other settings-to-dataclass maps in shape only.
        return cls(
            success_rate_min_pct=s.alert_success_rate_min_pct,
            success_rate_min_sample=s.alert_success_rate_min_sample,
            pending_max=s.alert_pending_max,
            stuck_seconds=s.alert_stuck_seconds,
            progress_stale_seconds=s.alert_progress_stale_seconds,
            failure_pattern_count=s.alert_failure_pattern_count,
            suspicious_failures=s.alert_suspicious_failures,
            fee_factor=s.alert_fee_factor,
            fee_min_baseline=s.alert_fee_min_baseline,
            hot_wallet_floors={
                asset: floor
                for asset, floor in (
                    ("TON", s.alert_hot_wallet_floor_ton),
                    ("USDT", s.alert_hot_wallet_floor_usdt),
                )
                if floor > 0
            },
            heartbeat_stale_seconds=s.alert_heartbeat_stale_seconds,
            heartbeat_forget_seconds=s.alert_heartbeat_forget_seconds,
            toncenter_unreachable_seconds=s.alert_toncenter_unreachable_seconds,
            bank_business_days=s.alert_bank_business_days,
            rate_limiter_seconds=s.alert_rate_limiter_seconds,
            slo_success_pct=s.slo_success_target_pct,
        )


@dataclass(frozen=True)
class Finding:
    """A condition that holds now. `dedup_key` is stable for as long as it holds."""

    dedup_key: str
    rule: str
    severity: Severity
    summary: str
    details: dict[str, Any] = field(default_factory=dict)


def below_rate(successes: int, total: int, min_pct: float, min_sample: int) -> bool:
    """True when enough outcomes exist and the success share is under `min_pct` percent."""
    if total < max(min_sample, 1):
        return False
    return Fraction(successes * 100) < Fraction(min_pct) * total  # exact, no float rounding


def _pct(successes: int, total: int) -> float:
    return round(100 * successes / total, 2) if total else 100.0


# ------------------------------------------------------------------ the rules
def success_rate(snap: Snapshot, t: Thresholds) -> list[Finding]:
    """Payments finished in the window (and attempts per rail) succeed less than the minimum."""
    out: list[Finding] = []
    ok, bad = (
        snap.finished.get(PaymentStatus.SUCCEEDED, 0),
        snap.finished.get(PaymentStatus.FAILED, 0),
    )
    if below_rate(ok, ok + bad, t.success_rate_min_pct, t.success_rate_min_sample):
        out.append(
            Finding(
                "success_rate:all",
                "success_rate",
                "critical",
                f"success rate {_pct(ok, ok + bad)} % over {snap.window_seconds} s "
                f"({bad} failed of {ok + bad}); minimum {t.success_rate_min_pct} %",
                {"succeeded": ok, "failed": bad, "window_seconds": snap.window_seconds},
            )
        )
    rails = sorted({rail for rail, _ in snap.attempts_finished})
    for rail in rails:
        good = snap.attempts_finished.get((rail, AttemptStatus.CONFIRMED), 0)
        failed = sum(
            n
            for (r, s), n in snap.attempts_finished.items()
            if r == rail and s != AttemptStatus.CONFIRMED
        )
        if below_rate(good, good + failed, t.success_rate_min_pct, t.success_rate_min_sample):
            # Every rule words its own Finding; they look alike in shape only.
            out.append(
                Finding(
                    f"success_rate:{rail}",
                    "success_rate",
                    "critical",
                    f"{rail} attempts succeed {_pct(good, good + failed)} % over "
                    f"{snap.window_seconds} s ({failed} of {good + failed} failed)",
                    {"rail": rail, "confirmed": good, "failed": failed},
                )
            )
    return out


def pending_high(snap: Snapshot, t: Thresholds) -> list[Finding]:
    if snap.pending_count <= t.pending_max:
        return []
    return [
        Finding(
            "pending_high",
            "pending_high",
            "warning",
            f"{snap.pending_count} payments pending (queued or processing); "
            f"maximum {t.pending_max}",
            {"pending": snap.pending_count, "oldest_age_seconds": round(snap.oldest_pending_age)},
        )
    ]


def business_days_seconds(since: datetime, days: int) -> float:
    """Seconds from `since` to the end of the `days`-th business day after it (Monday to
    Friday, UTC; a transfer sent on Friday evening is normal until Wednesday's end)."""
    return (_business_days_end(since.date(), days) - since).total_seconds()


def _business_days_end(sent: date, days: int) -> datetime:
    """The end (UTC midnight) of the `days`-th business day after the day `sent`."""
    day, left = sent, days
    while left > 0:
        day += timedelta(days=1)
        if day.weekday() < 5:
            left -= 1
    return datetime.combine(day + timedelta(days=1), time.min, tzinfo=UTC)


def bank_cutoff(at: datetime, days: int) -> datetime:
    """At `at`, a bank transfer sent before this instant is past its business days and one
    sent at or after it is within them. The end of a transfer's days depends only on the
    day it was sent and never comes earlier for a later day, so one instant (a midnight)
    divides them: a query can count late bank payouts by `created_at` alone."""
    day = at.date()
    while _business_days_end(day, days) >= at:
        day -= timedelta(days=1)
    return datetime.combine(day + timedelta(days=1), time.min, tzinfo=UTC)


def _waiting_is_normal(p: PendingPayment, at: datetime, t: Thresholds) -> bool:
    """A payout on the bank rail still within its business days, or a treasury payout whose
    order waits for the multisig's signers before it expires: pending is normal."""
    if p.awaiting_signers:
        return True
    if p.route != "bank":
        return False
    return at - timedelta(seconds=p.age_seconds) >= bank_cutoff(at, t.bank_business_days)


def is_stuck(p: PendingPayment, at: datetime, t: Thresholds) -> bool:
    """Pending longer than the stuck age, or than its own target confirmation time if longer;
    a bank transfer only after its business days (BACKUP-RAILS.md: 1-3 is normal); a treasury
    payout not while its order waits for the signers (docs/TREASURY.md). The rule
    `payments_stuck` and the dashboard's list of stuck payments both ask this."""
    return p.age_seconds > max(t.stuck_seconds, p.target_seconds) and not _waiting_is_normal(
        p, at, t
    )


class PendingRow(Protocol):
    """What `row_is_stuck` reads of a payment (a mapped Payment or a selected row)."""

    @property
    def id(self) -> str: ...
    @property
    def created_at(self) -> datetime: ...
    @property
    def target_confirmation_seconds(self) -> int: ...
    @property
    def route(self) -> str | None: ...


def row_is_stuck(row: PendingRow, at: datetime, t: Thresholds, signing: Collection[str]) -> bool:
    """`is_stuck` for a pending payment read from the database; `signing`: the treasury
    payouts whose order waits for its signers (`snapshot.awaiting_signers`)."""
    pending = PendingPayment(
        row.id,
        (at - row.created_at).total_seconds(),
        row.target_confirmation_seconds,
        0.0,
        row.route,
        awaiting_signers=row.id in signing,
    )
    return is_stuck(pending, at, t)


def payments_stuck(snap: Snapshot, t: Thresholds) -> list[Finding]:
    """The pending payments that are stuck (`is_stuck`)."""
    stuck = [p for p in snap.pending_old if is_stuck(p, snap.at, t)]
    if not stuck:
        return []
    return [
        Finding(
            "payments_stuck",
            "payments_stuck",
            "error",
            f"{len(stuck)} payments pending for more than {t.stuck_seconds} s "
            f"(oldest {round(max(p.age_seconds for p in stuck))} s)",
            {"count": len(stuck), "payment_ids": [p.id for p in stuck[:20]]},
        )
    ]


def payments_not_progressing(snap: Snapshot, t: Thresholds) -> list[Finding]:
    """Open payments where nothing (payment or attempt) changed for the stale time (but a
    bank payout within its business days, a treasury payout waiting for its signers)."""
    idle = [
        p
        for p in snap.pending_old
        if p.idle_seconds > t.progress_stale_seconds and not _waiting_is_normal(p, snap.at, t)
    ]
    if not idle:
        return []
    return [
        Finding(
            "payments_not_progressing",
            "payments_not_progressing",
            "error",
            f"{len(idle)} open payments unchanged for more than {t.progress_stale_seconds} s",
            {"count": len(idle), "payment_ids": [p.id for p in idle[:20]]},
        )
    ]


def failure_pattern(snap: Snapshot, t: Thresholds) -> list[Finding]:
    """The same error code at least N times on one rail within the window."""
    return [
        Finding(
            f"failure_pattern:{rail}:{code}",
            "failure_pattern",
            "error",
            f"{count} {rail} attempts failed with {code} in {snap.window_seconds} s",
            {"rail": rail, "error_code": code, "count": count},
        )
        for (rail, code), count in sorted(snap.failures_by_code.items())
        if count >= t.failure_pattern_count
    ]


def fee_unusually_high(recent: Sequence[int], baseline: Sequence[int], t: Thresholds) -> bool:
    """Median of recent fees above `fee_factor` x the baseline median (enough samples only)."""
    if len(baseline) < t.fee_min_baseline or len(recent) < t.fee_min_recent:
        return False
    base = statistics.median(baseline)
    return statistics.median(recent) > t.fee_factor * base if base > 0 else False


def fee_high(snap: Snapshot, t: Thresholds) -> list[Finding]:
    out = []
    for key in sorted(snap.fees_recent):
        recent, baseline = snap.fees_recent[key], snap.fees_baseline.get(key, [])
        if fee_unusually_high(recent, baseline, t):
            rail, asset = key
            out.append(
                Finding(
                    f"fee_high:{rail}:{asset}",
                    "fee_high",
                    "warning",
                    f"{rail} fees in {asset} are unusually high: "
                    f"median {statistics.median(recent)} "
                    f"vs {statistics.median(baseline)} before (minor units)",
                    {
                        "rail": rail,
                        "asset": asset,
                        "recent_median": statistics.median(recent),
                        "baseline_median": statistics.median(baseline),
                    },
                )
            )
    return out


def subjects_to_lock(snap: Snapshot, t: Thresholds) -> list[tuple[str, str, int]]:
    """(kind, subject, failures) with at least the suspicious count and no active lock."""
    return sorted(
        (kind, subject, count)
        for (kind, subject), count in snap.subject_failures.items()
        if count >= t.suspicious_failures and (kind, subject) not in snap.lockouts
    )


def suspicious_activity(snap: Snapshot, t: Thresholds) -> list[Finding]:
    """One alert per locked subject; it resolves when an admin unlocks the subject."""
    return [
        Finding(
            f"suspicious_activity:{kind}:{subject}",
            "suspicious_activity",
            "critical",
            f"{kind} {subject} locked after {failures} failures in {snap.window_seconds} s",
            {"kind": kind, "subject": subject, "failures": failures, "lockout_id": lock_id},
        )
        for (kind, subject), (lock_id, failures) in sorted(snap.lockouts.items())
    ]


def hot_wallet_low(snap: Snapshot, t: Thresholds) -> list[Finding]:
    out = []
    for asset, floor in sorted(t.hot_wallet_floors.items()):
        sig = snap.signal("hot_wallet_balance", asset=asset)
        if sig is not None and sig.value < floor:
            order = snap.topup_orders.get(asset)
            topup = (
                f"; top-up order {order} waits for the treasury's approvers "
                f"(tonrail treasury order {order})"
                if order
                else ""
            )
            out.append(
                Finding(
                    f"hot_wallet_low:{asset}",
                    "hot_wallet_low",
                    "critical",
                    f"hot wallet {asset} balance {sig.value} is below its floor {floor} "
                    f"(minor units){topup}",
                    {"asset": asset, "balance": sig.value, "floor": floor, "topup_order": order},
                )
            )
    return out


def worker_stale(snap: Snapshot, t: Thresholds) -> list[Finding]:
    """A loop whose freshest heartbeat (any worker) is too old; retired loops are ignored."""
    return [
        Finding(
            f"worker_stale:{loop}",
            "worker_stale",
            "error",
            f"worker loop {loop} has not heartbeated for {round(age)} s",
            {"loop": loop, "age_seconds": round(age)},
        )
        for loop, age in sorted(snap.heartbeat_age.items())
        if t.heartbeat_stale_seconds < age <= t.heartbeat_forget_seconds
    ]


def toncenter_unreachable(snap: Snapshot, t: Thresholds) -> list[Finding]:
    """Errors from toncenter and no success for the unreachable time (per endpoint)."""
    now_ms = snap.at.timestamp() * 1000
    out = []
    for err in snap.signals_named("toncenter_last_error_ms"):
        endpoint = err.labels.get("endpoint", "")
        ok = snap.signal("toncenter_last_ok_ms", endpoint=endpoint)
        last_ok = ok.value if ok is not None else 0
        silent_ms = now_ms - last_ok
        recent_error = now_ms - err.value <= t.toncenter_unreachable_seconds * 1000
        if (
            err.value > last_ok
            and recent_error
            and silent_ms > t.toncenter_unreachable_seconds * 1000
        ):
            out.append(
                Finding(
                    f"toncenter_unreachable:{endpoint}",
                    "toncenter_unreachable",
                    "critical",
                    f"toncenter {endpoint} failing with no success for more than "
                    f"{t.toncenter_unreachable_seconds} s",
                    {
                        "endpoint": endpoint,
                        "last_ok_ms": last_ok or None,
                        "last_error_ms": err.value,
                    },
                )
            )
    return out


def rate_limiter_unavailable(snap: Snapshot, t: Thresholds) -> list[Finding]:
    """API processes that could not reach Redis, the shared rate-limit store, recently and
    have not reached it since (each re-reports every few seconds while it is down)."""
    now_ms = snap.at.timestamp() * 1000
    down = []
    for err in snap.signals_named("rate_limit_store_error_ms"):
        process = err.labels.get("process", "")
        ok = snap.signal("rate_limit_store_ok_ms", process=process)
        recovered = ok is not None and ok.value >= err.value
        if not recovered and now_ms - err.value <= t.rate_limiter_seconds * 1000:
            down.append(process)
    if not down:
        return []
    return [
        Finding(
            "rate_limiter_unavailable",
            "rate_limiter_unavailable",
            "error",
            f"{len(down)} API process(es) cannot reach Redis, the shared rate-limit store: "
            "limits are per process and large payouts are refused (RATE_LIMIT_FAIL_CLOSED_USDT)",
            {"processes": sorted(down)[:20]},
        )
    ]


def channel_failing(snap: Snapshot, t: Thresholds) -> list[Finding]:
    """An alert channel whose deliveries fail or keep retrying (sent to the other channels)."""
    out = []
    channels = set(snap.deliveries_failed_recent) | set(snap.deliveries_retrying)
    for channel in sorted(channels):
        failed = snap.deliveries_failed_recent.get(channel, 0)
        retrying = snap.deliveries_retrying.get(channel, 0)
        if failed > 0 or retrying >= t.channel_retrying_max:
            # Every rule words its own Finding; they look alike in shape only.
            out.append(
                Finding(
                    f"channel_failing:{channel}",
                    "channel_failing",
                    "error",
                    f"alert channel {channel} is failing: {failed} deliveries failed, "
                    f"{retrying} retrying",
                    {"channel": channel, "failed": failed, "retrying": retrying},
                )
            )
    return out


def webhook_endpoint_disabled(snap: Snapshot, t: Thresholds) -> list[Finding]:
    """A merchant's webhook endpoint that tonrail disabled (failing for
    WEBHOOK_DISABLE_AFTER_SECONDS, or it answered 410): it hears nothing until re-enabled."""
    return [
        Finding(
            f"webhook_endpoint_disabled:{endpoint_id}",
            "webhook_endpoint_disabled",
            "error",
            f"webhook endpoint {endpoint_id} of {account} was disabled ({reason}); "
            "its events wait until it is enabled again",
            {"endpoint": endpoint_id, "account": account, "reason": reason},
        )
        for endpoint_id, account, reason in snap.webhooks_disabled
    ]


def books_mismatch(snap: Snapshot, t: Thresholds) -> list[Finding]:
    """The hot wallet's books differ from the chain at the last check (reconcile.py: TON up
    to an lt, also in flight; USDT at a quiet point): money moved that the books do not
    show, or the books show what never moved."""
    return _books_differ(snap, "hot", "books_mismatch", "hot wallet")


def treasury_books_mismatch(snap: Snapshot, t: Thresholds) -> list[Finding]:
    """The treasury's books (`asset:treasury`) differ from the multisig and its orders on
    chain at the last quiet check (processing/treasury_reconcile.py): TON or USDT sent to
    the treasury outside tonrail, or taken out of it by an order tonrail did not propose."""
    return _books_differ(snap, "treasury", "treasury_books_mismatch", "treasury")


def _books_differ(snap: Snapshot, wallet: str, rule: str, name: str) -> list[Finding]:
    differences = {
        sig.labels.get("asset", ""): sig.value
        for sig in snap.signals_named(BOOKS_DIFFERENCE)
        if sig.value != 0 and sig.labels.get("wallet", "hot") == wallet
    }
    if not differences:
        return []
    worded = ", ".join(f"{asset} {diff:+d}" for asset, diff in sorted(differences.items()))
    return [
        Finding(
            rule,
            rule,
            "critical",
            f"{name} books differ from the chain: {worded} (chain minus books, minor units)",
            {"differences": differences},
        )
    ]


def screening_blocked(snap: Snapshot, t: Thresholds) -> list[Finding]:
    """A payment was refused or a deposit frozen by AML/KYC screening within the window
    (screening/service.py and processing/deposits.py count each; the decisions are in
    screening_decisions)."""
    sig = snap.signal(SCREENING_BLOCKED)
    if sig is None or (snap.at - sig.updated_at).total_seconds() > snap.window_seconds:
        return []
    return [
        Finding(
            "screening_blocked",
            "screening_blocked",
            "error",
            "a payment was refused (or a deposit frozen) by AML/KYC screening; see the "
            "screening decisions (docs/COMPLIANCE.md)",
            {"refusals_total": sig.value},
        )
    ]


def stray_messages(snap: Snapshot, t: Thresholds) -> list[Finding]:
    """A message no payout explains left the hot wallet within the window (outcomes.py:
    `Stray`); booked to `expense:stray_outflow`, each one is worth a look."""
    last = snap.signal(STRAY_MESSAGE_LAST_MS)
    if last is None or snap.at.timestamp() * 1000 - last.value > snap.window_seconds * 1000:
        return []
    total = snap.signal(STRAY_MESSAGES)
    return [
        Finding(
            "stray_messages",
            "stray_messages",
            "critical",
            "a message no payout explains left the hot wallet (event ton.stray_message; "
            "booked to expense:stray_outflow)",
            {"last_ms": last.value, "total": total.value if total is not None else None},
        )
    ]


def gas_cap_exceeded(snap: Snapshot, t: Thresholds) -> list[Finding]:
    """Payouts held because their estimated fee or attach exceeds a gas cap (TON_GAS_CAP_*):
    nothing of them is signed until the estimate is back under the cap, or the cap raised."""
    return [
        Finding(
            f"gas_cap_exceeded:{reason}",
            "gas_cap_exceeded",
            "critical",
            f"{count} TON payout(s) held: {reason} (the estimate exceeds the gas cap); "
            "they go once the estimate is back under the cap",
            {"reason": reason, "payouts": count, "payout_ids": ids},
        )
        for reason, (count, ids) in sorted(snap.holds.items())
        if reason in GAS_CAP_HOLDS
    ]


def rate_stale(snap: Snapshot, t: Thresholds) -> list[Finding]:
    """Payouts held because the exchange rate their limit checks need is stale or cannot be
    read (rates.py, RATE_SOURCE): released by themselves once a fresh rate arrives."""
    held = snap.holds.get(HoldReason.RATE_STALE)
    if held is None:
        return []
    count, ids = held
    return [
        Finding(
            "rate_stale",
            "rate_stale",
            "critical",
            f"{count} payout(s) held: the exchange rate for their limit checks is stale or "
            "unavailable (RATE_SOURCE); they go once a fresh rate arrives",
            {"payouts": count, "payout_ids": ids},
        )
    ]


def payout_unknown(snap: Snapshot, t: Thresholds) -> list[Finding]:
    """Payouts whose attempt is `unknown`: unconfirmed past TON_CONFIRMATION_TIMEOUT_SECONDS,
    or past validity and not provably unprocessed. Nothing is re-signed for them until the
    tracker or `tonrail payouts resolve-unknown` proves them sent or expired."""
    count, ids = snap.unknown_payouts
    if not count:
        return []
    return [
        Finding(
            "payout_unknown",
            "payout_unknown",
            "critical",
            f"{count} payout attempt(s) unknown: sent but unconfirmed past the confirmation "
            "timeout, or not provably unprocessed; run `tonrail payouts resolve-unknown --all`",
            {"payouts": count, "payout_ids": ids},
        )
    ]


def slo_burn(snap: Snapshot, t: Thresholds) -> list[Finding]:
    """The success objective's error budget burns fast over a long and a short window at
    once (monitoring/slo.py: BURN_WINDOWS); one alert, at the worse severity that holds.
    A long window needs `success_rate_min_sample` finished payments for a verdict."""
    for long_s, short_s, limit, severity in BURN_WINDOWS:
        ok_l, bad_l = snap.finished_windows.get(long_s, (0, 0))
        ok_s, bad_s = snap.finished_windows.get(short_s, (0, 0))
        if ok_l + bad_l < t.success_rate_min_sample:
            continue
        long_burn = burn_rate(bad_l, ok_l + bad_l, t.slo_success_pct)
        short_burn = burn_rate(bad_s, ok_s + bad_s, t.slo_success_pct)
        if long_burn is None or short_burn is None or min(long_burn, short_burn) < limit:
            continue
        return [
            Finding(
                "slo_burn:success_rate",
                "slo_burn",
                severity,
                f"the {t.slo_success_pct} % success objective's error budget burns "
                f"{long_burn:.1f}x over {long_s // 60} min and {short_burn:.1f}x over "
                f"{short_s // 60} min ({bad_l} failed of {ok_l + bad_l}); limit {limit}x",
                {
                    "long_window_seconds": long_s,
                    "short_window_seconds": short_s,
                    "long_burn": round(long_burn, 2),
                    "short_burn": round(short_burn, 2),
                    "limit": limit,
                    "failed": bad_l,
                    "finished": ok_l + bad_l,
                },
            )
        ]
    return []


RULES: tuple[Callable[[Snapshot, Thresholds], list[Finding]], ...] = (
    success_rate,
    slo_burn,
    pending_high,
    payments_stuck,
    payments_not_progressing,
    failure_pattern,
    fee_high,
    suspicious_activity,
    hot_wallet_low,
    worker_stale,
    toncenter_unreachable,
    rate_limiter_unavailable,
    channel_failing,
    webhook_endpoint_disabled,
    books_mismatch,
    treasury_books_mismatch,
    screening_blocked,
    stray_messages,
    gas_cap_exceeded,
    rate_stale,
    payout_unknown,
)


def evaluate(snap: Snapshot, t: Thresholds) -> list[Finding]:
    """Every finding of every rule; dedup keys are unique."""
    findings: dict[str, Finding] = {}
    for rule in RULES:
        for finding in rule(snap, t):
            findings.setdefault(finding.dedup_key, finding)
    return list(findings.values())
