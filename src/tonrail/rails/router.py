"""Which rail a payment goes to next: pure decisions over plain data (no IO, no clock).

The processing loop gathers the inputs (quotes from each rail, the fee optimizer's
congestion and divert decision, the TON attempt's outcome, circuit breakers, the payment's
live attempt) and calls `choose_rail`. TON comes first; the backup rails follow in the
configured priority order. A backup attempt never starts while a TON attempt is
`submitted` or `unknown`: the answer is then `Wait`, until that attempt is resolved.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Literal

from tonrail.rails.base import PaymentView, Quote, RailName
from tonrail.states import FAILED_ATTEMPT_STATES, LIVE_ATTEMPT_STATES, AttemptStatus

BreakerStateName = Literal["closed", "open", "half_open"]
FallbackReason = Literal["ton_congested", "fee_diverted", "ton_failed_after_retries"]
BACKUP_RAILS: tuple[RailName, ...] = ("stripe", "paypal", "bank")


# ---------------------------------------------------------------- circuit breaker
# Plain frozen dataclasses, a few typed fields each: alike others in shape only.
@dataclass(frozen=True, slots=True)
class BreakerPolicy:
    failure_threshold: int = 5
    open_seconds: int = 60


@dataclass(frozen=True, slots=True)
class Breaker:
    """A rail's health: `closed` (normal), `open` (skip it), `half_open` (one probe out)."""

    state: BreakerStateName = "closed"
    failures: int = 0
    opened_at: datetime | None = None


def breaker_allows(b: Breaker, now: datetime, policy: BreakerPolicy) -> bool:
    """May a new attempt go to this rail now? An open breaker admits one probe when cool."""
    if b.state == "closed":
        return True
    if b.state == "half_open":
        return False  # the probe is in flight; wait for its outcome
    assert b.opened_at is not None
    return now >= b.opened_at + timedelta(seconds=policy.open_seconds)


def breaker_on_probe(b: Breaker, now: datetime, policy: BreakerPolicy) -> Breaker:
    """An attempt starts on the rail: a cooled-down open breaker becomes half-open."""
    if b.state == "open" and breaker_allows(b, now, policy):
        return replace(b, state="half_open")
    return b


def breaker_on_success(b: Breaker) -> Breaker:
    return Breaker()


def breaker_on_error(b: Breaker, now: datetime, policy: BreakerPolicy) -> Breaker:
    """A provider error (5xx, timeout, refused): count it; open at the threshold or on a
    failed half-open probe."""
    failures = b.failures + 1
    if b.state == "half_open" or failures >= policy.failure_threshold:
        return Breaker(state="open", failures=failures, opened_at=now)
    return replace(b, failures=failures)


# ---------------------------------------------------------------- routing
@dataclass(frozen=True, slots=True)
class RoutingPolicy:
    """Backup rail order and, per payment priority, the TON congestion that triggers them."""

    backup_order: tuple[RailName, ...] = BACKUP_RAILS
    congestion_pct: Mapping[str, int] = field(
        default_factory=lambda: {"urgent": 50, "normal": 75, "low": 95}
    )
    breaker: BreakerPolicy = field(default_factory=BreakerPolicy)


# Plain frozen dataclasses (fields only): alike others in shape only.
@dataclass(frozen=True, slots=True)
class PastAttempt:
    rail: RailName
    status: AttemptStatus


@dataclass(frozen=True, slots=True)
class RouteContext:
    """Everything `choose_rail` looks at; the loop builds it fresh for each decision.

    `quotes` holds each candidate rail's quote (a missing quote means not configured);
    `enabled` the rails switched on; `health` the circuit breakers (missing = closed).
    """

    now: datetime
    quotes: Mapping[RailName, Quote]
    enabled: frozenset[RailName]
    attempts: Sequence[PastAttempt] = ()
    congestion_pct: int | None = None
    divert: bool = False
    ton_failed_after_retries: bool = False
    health: Mapping[RailName, Breaker] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Skip:
    rail: RailName
    reason: str


@dataclass(frozen=True, slots=True)
class RailChoice:
    """Start an attempt on `rail`; `reason` goes on the attempt (`primary` or a fallback)."""

    rail: RailName
    reason: str
    skipped: tuple[Skip, ...] = ()


@dataclass(frozen=True, slots=True)
class Wait:
    """An attempt may still move money: resolve it before anything else."""

    reason: str
    attempt_rail: RailName


@dataclass(frozen=True, slots=True)
class NoRail:
    """No rail can take the payment; `skipped` says why each one was passed over."""

    skipped: tuple[Skip, ...]


Decision = RailChoice | Wait | NoRail


SOFT_FALLBACK_REASONS = frozenset({"ton_congested", "fee_diverted"})


def fallback_reason(payment: PaymentView, ctx: RouteContext, policy: RoutingPolicy) -> str | None:
    """Why TON should not take this payment now, or None when it should."""
    if ctx.ton_failed_after_retries:
        return "ton_failed_after_retries"
    if ctx.divert:
        return "fee_diverted"
    limit = policy.congestion_pct.get(payment.priority, policy.congestion_pct.get("normal", 75))
    if ctx.congestion_pct is not None and ctx.congestion_pct > limit:
        return "ton_congested"
    return None


def _skip_reason(rail: RailName, ctx: RouteContext, policy: RoutingPolicy) -> str | None:
    if rail not in ctx.enabled:
        return "disabled"
    quote = ctx.quotes.get(rail)
    if quote is None:
        return "not_configured"
    if not quote.available:
        return quote.reason or "unavailable"
    breaker = ctx.health.get(rail, Breaker())
    if not breaker_allows(breaker, ctx.now, policy.breaker):
        return "circuit_open" if breaker.state == "open" else "circuit_half_open_probe_in_flight"
    return None


def choose_rail(payment: PaymentView, ctx: RouteContext, policy: RoutingPolicy) -> Decision:
    """The next rail for `payment`: TON unless a fallback trigger holds, then the first
    backup rail (by priority) that is enabled, quoted available (direction, currency,
    counterparty, max amount) and healthy."""
    for a in ctx.attempts:
        if a.status in LIVE_ATTEMPT_STATES:
            return Wait(reason=f"attempt_{a.status}", attempt_rail=a.rail)
    if any(a.status == AttemptStatus.CONFIRMED for a in ctx.attempts):
        return NoRail(tuple(Skip(a.rail, "already_confirmed") for a in ctx.attempts))
    skipped: list[Skip] = []
    reason = fallback_reason(payment, ctx, policy)
    ton_failed_before = any(
        a.rail == "ton" and a.status == AttemptStatus.FAILED for a in ctx.attempts
    )
    if reason is None and not ton_failed_before:
        why = _skip_reason("ton", ctx, policy)
        if why is None:
            return RailChoice("ton", "primary")
        skipped.append(Skip("ton", why))
        reason = f"ton_{why}"
    elif reason is None:
        # TON failed before and the loop did not flag "after retries": TON retries itself.
        why = _skip_reason("ton", ctx, policy)
        if why is None:
            return RailChoice("ton", "retry")
        skipped.append(Skip("ton", why))
        reason = f"ton_{why}"
    else:
        skipped.append(Skip("ton", reason))
    tried = {a.rail for a in ctx.attempts if a.status in FAILED_ATTEMPT_STATES}
    for rail in policy.backup_order:
        if rail == "ton":
            continue
        why = _skip_reason(rail, ctx, policy)
        if why is None and rail in tried:
            why = "failed_before"
        if why is not None:
            skipped.append(Skip(rail, why))
            continue
        return RailChoice(rail, reason, tuple(skipped))
    # Congestion and fees are reasons to prefer another rail, not to refuse the payment:
    # when no backup rail can take it, TON still does (late or dear beats not at all).
    if reason in SOFT_FALLBACK_REASONS and _skip_reason("ton", ctx, policy) is None:
        return RailChoice("ton", f"{reason}_no_backup", tuple(skipped))
    return NoRail(tuple(skipped))
