"""Where every queued payout goes: claim → fee decision → router, whatever the rail.

Two callers, one path. The TON loop (ton_loop.py) claims the payouts TON may take, has the
fee optimizer decide for them and routes them here in its own transaction, after it read
the chain: the common case, and the fast one. `dispatch_round` (the `dispatch_payouts`
loop) routes the queued payouts TON cannot take now — its loops idle (no hot wallet key) or
cannot read the chain (its breaker is open, health.py) — to a backup rail with the reason
`ton_unavailable`. Either way the decision is `decide_many`: the payouts' attempts, the
breakers and every rail's quote read once, then `rails.router.choose_rail` for each payout.
A payout with a live attempt (`created`, `submitted`, `unknown`) is never routed: `Wait`.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Protocol

import structlog
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from tonrail import clock
from tonrail.db import Database
from tonrail.fees.policy import FeeDecision
from tonrail.fees.repository import latest_sample
from tonrail.fees.service import FeeConditions, decide_for_batch, record_outcome
from tonrail.kit.claims import claim
from tonrail.payments.attempts import payment_view
from tonrail.payments.models import Attempt, Payment
from tonrail.payments.service import PaymentService
from tonrail.payments.states import FAILED_ATTEMPT_STATES, PaymentStatus
from tonrail.payments.transitions import move_payment
from tonrail.processing.health import load_health, ton_up
from tonrail.rails.base import PaymentView, Quote, RailName
from tonrail.rails.router import (
    Decision,
    NoRail,
    PastAttempt,
    RailChoice,
    RouteContext,
    RoutingPolicy,
    choose_rail,
)
from tonrail.security.switches import is_on
from tonrail.settings import Settings
from tonrail.states import JETTON_ATTACH_EXHAUSTED, JETTON_ATTACH_LOW

log = structlog.get_logger(__name__)

PRIORITY_ORDER = {"urgent": 0, "normal": 1, "low": 2}
# A bounce is final for TON: the same message to the same address would bounce again. So is
# a jetton transfer our jetton wallet kept refusing for too little TON after its retries.
FINAL_TON_ERRORS = frozenset({"bounced", JETTON_ATTACH_EXHAUSTED})
# TON's quote while it cannot take payouts: the router's fallback reason is `ton_unavailable`.
TON_UNAVAILABLE = "unavailable"


class Quotable(Protocol):
    async def quote(self, payment: PaymentView) -> Quote: ...


class Unavailable:
    """TON's quote while its loops idle or cannot read the chain."""

    async def quote(self, payment: PaymentView) -> Quote:
        return Quote("ton", 0, "TON", 0, False, TON_UNAVAILABLE)


@dataclass(frozen=True)
class Routing:
    """What routing needs besides the payouts: the rails that may quote and the policy."""

    settings: Settings
    payments: PaymentService
    backup: Mapping[str, Quotable]
    policy: RoutingPolicy
    enabled: frozenset[RailName]


# ------------------------------------------------------------------------------- deciding
def ton_exhausted_by(settings: Settings, attempts: Sequence[Attempt]) -> bool:
    """TON has had its chance: all retries used, or an error no retry can fix. Attempts our
    jetton wallet refused for too little TON attached have their own budget
    (FEES_JETTON_ATTACH_RETRIES, outcomes.py) and do not count against TON_MAX_ATTEMPTS."""
    ton = [a for a in attempts if a.rail == "ton"]
    if any(a.error_code in FINAL_TON_ERRORS for a in ton):
        return True
    failed = sum(
        a.status in FAILED_ATTEMPT_STATES and a.error_code != JETTON_ATTACH_LOW for a in ton
    )
    return failed >= settings.ton_max_attempts


async def attempts_of(
    session: AsyncSession, payment_ids: Sequence[str]
) -> dict[str, list[Attempt]]:
    """The attempts of each payment, oldest first (one statement for the lot)."""
    history: dict[str, list[Attempt]] = {p: [] for p in payment_ids}
    for a in (
        await session.execute(
            select(Attempt)
            .where(Attempt.payment_id.in_(list(payment_ids)))
            .order_by(Attempt.payment_id, Attempt.number)
        )
    ).scalars():
        history[a.payment_id].append(a)
    return history


async def congestion(session: AsyncSession, settings: Settings) -> int | None:
    """The fee optimizer's latest congestion estimate (0-100), if it is fresh."""
    sample = await latest_sample(session)
    if sample is None or sample.congestion_bp is None:
        return None
    if clock.now() - sample.sampled_at > timedelta(seconds=settings.route_congestion_max_age_s):
        return None  # an old sample says nothing about now
    return sample.congestion_bp // 100


async def decide_many(
    session: AsyncSession,
    payments: Sequence[Payment],
    rails: Mapping[str, Quotable],
    policy: RoutingPolicy,
    *,
    enabled: frozenset[RailName],
    congestion_pct: int | None = None,
    divert: Collection[str] = (),
    exhausted: Callable[[Sequence[Attempt]], bool] = lambda _: False,
) -> dict[str, Decision]:
    """Route each of `payments`: quote every rail in `rails` (TON included when given), read
    the breakers and the payments' attempts (once for all), and ask the router. `divert`
    holds the ids the fee optimizer diverts; `exhausted` says from a payment's attempts
    whether TON has had its chance. No side effects."""
    history = await attempts_of(session, [p.id for p in payments])
    health = await load_health(session)
    now = clock.now()
    decisions: dict[str, Decision] = {}
    for p in payments:
        view = payment_view(p)
        quotes: dict[Any, Quote] = {name: await rail.quote(view) for name, rail in rails.items()}
        past = history[p.id]
        ctx = RouteContext(
            now=now,
            quotes=quotes,
            enabled=enabled,
            attempts=[PastAttempt(a.rail, a.status) for a in past],  # type: ignore[arg-type]
            congestion_pct=congestion_pct,
            divert=p.id in divert,
            ton_failed_after_retries=exhausted(past),
            health=health,
        )
        decisions[p.id] = choose_rail(view, ctx, policy)
    return decisions


# A session, the payout, its rails and policy: alike other signatures in shape only.
async def decide(
    session: AsyncSession,
    payment: Payment,
    rails: Mapping[str, Quotable],
    policy: RoutingPolicy,
    *,
    enabled: frozenset[RailName],
    congestion_pct: int | None = None,
    divert: bool = False,
    ton_failed_after_retries: bool = False,
) -> Decision:
    """`decide_many` for one payment."""
    decisions = await decide_many(
        session,
        [payment],
        rails,
        policy,
        enabled=enabled,
        congestion_pct=congestion_pct,
        divert={payment.id} if divert else (),
        exhausted=lambda _: ton_failed_after_retries,
    )
    return decisions[payment.id]


# ------------------------------------------------------------------------------- routing
async def set_columns(
    session: AsyncSession, groups: Mapping[tuple[Any, ...], list[Payment]], names: Sequence[str]
) -> None:
    """One UPDATE per distinct tuple of values (`names`) instead of one per payout."""
    for values, payments in groups.items():
        await session.execute(
            update(Payment)
            .where(Payment.id.in_([p.id for p in payments]))
            .values(dict(zip(names, values, strict=True)))
            .execution_options(synchronize_session=False)
        )
        for p in payments:
            for name, value in zip(names, values, strict=True):
                set_committed_value(p, name, value)


async def route_batch(
    routing: Routing,
    session: AsyncSession,
    claimed: list[Payment],
    ton: Quotable,
    fee_decisions: Mapping[str, FeeDecision],
) -> list[Payment]:
    """Ask the router about claimed payouts not routed to TON yet; keep those it sends to
    TON (still leased to the caller), release the others to their rail.

    With a backup rail configured, the router also hears the fee optimizer: the network's
    congestion and, per payout, whether its fee on TON is over the threshold (divert).
    A payout no rail can take fails (`no_rail_available`), unless TON is only unavailable
    for now: then it waits, unrouted, for TON or a backup rail to come back."""
    fresh = [p for p in claimed if p.route != "ton" or isinstance(ton, Unavailable)]
    if not fresh:
        return claimed
    # The fee optimizer only matters to routing when there is somewhere else to go.
    backups = bool(set(routing.enabled) - {"ton"})
    ton_down = isinstance(ton, Unavailable)
    pct = await congestion(session, routing.settings) if backups and not ton_down else None
    divert = {pid for pid, d in fee_decisions.items() if backups and d.divert_reason is not None}
    decisions = await decide_many(
        session,
        fresh,
        {"ton": ton, **routing.backup},
        routing.policy,
        enabled=routing.enabled,
        congestion_pct=pct,
        divert=divert,
        exhausted=lambda past: ton_exhausted_by(routing.settings, past),
    )
    kept: list[Payment] = []
    routed: dict[tuple[Any, ...], list[Payment]] = {}  # to TON: (route, reason)
    released: dict[tuple[Any, ...], list[Payment]] = {}  # elsewhere, or waiting: unleased
    for p in claimed:
        decision = decisions.get(p.id)
        if decision is None:  # routed to TON before
            kept.append(p)
        elif isinstance(decision, RailChoice):
            if decision.rail == "ton":
                routed.setdefault(("ton", decision.reason), []).append(p)
                kept.append(p)
                continue
            released.setdefault((decision.rail, decision.reason, None, None), []).append(p)
            await record_outcome(session, p.id, "diverted")
            log.info(
                "payout routed to a backup rail",
                payment=p.id,
                rail=decision.rail,
                reason=decision.reason,
            )
        elif isinstance(decision, NoRail):
            if any(s.rail == "ton" and s.reason == TON_UNAVAILABLE for s in decision.skipped):
                until = clock.now() + timedelta(seconds=routing.settings.worker_lease_seconds)
                released.setdefault((None, None, None, until), []).append(p)
                continue
            why = "; ".join(f"{s.rail}: {s.reason}" for s in decision.skipped) or "no rail"
            await move_payment(
                session,
                p,
                PaymentStatus.FAILED,
                actor="system:router",
                failure_code="no_rail_available",
                failure_message=why,
            )
        else:  # Wait: an attempt is still live; leave the payout alone
            released.setdefault((p.route, p.route_reason, None, None), []).append(p)
    # Payouts for TON stay leased to this worker; the others are released to their rail.
    await set_columns(session, routed, ("route", "route_reason"))
    await set_columns(session, released, ("route", "route_reason", "locked_by", "locked_until"))
    return kept


async def claim_queued(
    session: AsyncSession, settings: Settings, worker_id: str, limit: int
) -> list[Payment]:
    """Lease queued payouts TON may take: unrouted, or routed to TON and not started."""
    return await claim(
        session,
        Payment,
        (Payment.direction == "out")
        & (Payment.status == PaymentStatus.QUEUED)
        & ((Payment.route.is_(None)) | (Payment.route == "ton")),
        worker_id=worker_id,
        lease_seconds=settings.worker_lease_seconds,
        limit=limit,
        order_by=(Payment.created_at,),
    )


async def claim_for_ton(
    routing: Routing,
    session: AsyncSession,
    worker_id: str,
    ton: Quotable,
    conditions: FeeConditions | None,
) -> tuple[list[Payment], dict[str, FeeDecision]]:
    """The TON loop's claim: queued payouts unrouted or routed to TON, by priority; the fee
    optimizer's decision for each (when it runs); the router's answer. Returns the payouts
    kept for TON and the decisions."""
    claimed = await claim_queued(
        session, routing.settings, worker_id, routing.settings.ton_batch_max
    )
    if not claimed:
        return [], {}
    claimed.sort(key=lambda p: (PRIORITY_ORDER.get(p.priority, 1), p.created_at))
    # The fee optimizer decides, for every payout, when it may go and with what.
    decisions: dict[str, FeeDecision] = (
        await decide_for_batch(session, conditions, routing.settings, claimed)
        if conditions is not None
        else {}
    )
    return await route_batch(routing, session, claimed, ton, decisions), decisions


# ------------------------------------------------------------------------------- the loop
async def dispatch_round(db: Database, routing: Routing, worker_id: str) -> int:
    """The `dispatch_payouts` loop: while TON cannot take payouts, route the queued ones
    (unrouted, or routed to TON and not started) to a backup rail. While TON is up, the TON
    loop routes what it claims and this does nothing."""
    if not routing.backup:
        return 0
    async with db.transaction() as session:
        if await is_on(session, "payments_paused"):
            return 0
        if ton_up(await load_health(session), clock.now(), routing.policy):
            return 0
        claimed = await claim_queued(
            session, routing.settings, worker_id, routing.settings.worker_batch_size
        )
        if claimed:
            await route_batch(routing, session, claimed, Unavailable(), {})
    return len(claimed)
