"""Circuit breakers of the rails, kept in `rail_health` so every worker shares them, and
the one call the processing loop makes to route a payment (`decide`)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Protocol

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from tonrail import clock
from tonrail.payments.attempts import payment_view
from tonrail.payments.models import Attempt, Payment
from tonrail.rails.base import PaymentView, Quote, RailName
from tonrail.rails.models import RailHealth
from tonrail.rails.router import (
    Breaker,
    BreakerPolicy,
    Decision,
    PastAttempt,
    RouteContext,
    RoutingPolicy,
    breaker_on_error,
    breaker_on_probe,
    breaker_on_success,
    choose_rail,
)


class Quotable(Protocol):
    async def quote(self, payment: PaymentView) -> Quote: ...


async def load_health(session: AsyncSession) -> dict[RailName, Breaker]:
    rows = (await session.execute(select(RailHealth))).scalars()
    return {
        row.rail: Breaker(row.state, row.failures, row.opened_at)  # type: ignore[misc, arg-type]
        for row in rows
    }


async def _save(session: AsyncSession, rail: str, b: Breaker, error: str | None) -> None:
    row = await session.get(RailHealth, rail, with_for_update=True)
    if row is None:
        row = RailHealth(rail=rail)
        session.add(row)
    row.state, row.failures, row.opened_at = b.state, b.failures, b.opened_at
    row.last_error = error[:200] if error else row.last_error
    row.updated_at = clock.now()
    await session.flush()


async def _current(session: AsyncSession, rail: str) -> Breaker:
    row = await session.get(RailHealth, rail, with_for_update=True)
    if row is None:
        return Breaker()
    return Breaker(row.state, row.failures, row.opened_at)  # type: ignore[arg-type]


async def record_rail_error(
    session: AsyncSession, rail: str, policy: BreakerPolicy, error: str, now: datetime | None = None
) -> Breaker:
    """A provider error (5xx, timeout, unreachable) on `rail`: may open its breaker."""
    b = breaker_on_error(await _current(session, rail), now or clock.now(), policy)
    await _save(session, rail, b, error)
    return b


async def record_rail_success(session: AsyncSession, rail: str) -> Breaker:
    """The provider answered normally: the breaker closes and its count resets."""
    b = breaker_on_success(await _current(session, rail))
    await _save(session, rail, b, None)
    return b


async def record_rail_probe(
    session: AsyncSession, rail: str, policy: BreakerPolicy, now: datetime | None = None
) -> Breaker:
    """An attempt starts on `rail`; a cooled-down open breaker lets this one through."""
    b = breaker_on_probe(await _current(session, rail), now or clock.now(), policy)
    await _save(session, rail, b, None)
    return b


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
    """Route `payment`: quote every rail in `rails` (TON included when given), read the
    breakers and the payment's attempts, and ask the router. No side effects."""
    view = payment_view(payment)
    attempts = (
        await session.execute(
            select(Attempt).where(Attempt.payment_id == payment.id).order_by(Attempt.number)
        )
    ).scalars()
    quotes: dict[RailName, Quote] = {}
    for name, rail in rails.items():
        quotes[name] = await rail.quote(view)  # type: ignore[index]
    ctx = RouteContext(
        now=clock.now(),
        quotes=quotes,
        enabled=enabled,
        attempts=[PastAttempt(a.rail, a.status) for a in attempts],  # type: ignore[arg-type]
        congestion_pct=congestion_pct,
        divert=divert,
        ton_failed_after_retries=ton_failed_after_retries,
        health=await load_health(session),
    )
    return choose_rail(view, ctx, policy)
