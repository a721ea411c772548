"""Circuit breakers of the rails, kept in `rail_health` so every worker shares them.

The backup loop counts a provider's errors (backup_loop.py). The TON loop counts its own:
a round that cannot read the chain (toncenter down past the client's retry budget) or that
has no hot wallet key to sign with is an error of `ton`; the next round that reads the chain
closes the breaker. While the breaker of `ton` is open, dispatch.py routes queued payouts
to a backup rail (`ton_unavailable`); once it has cooled down, TON is tried again."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from tonrail import clock
from tonrail.db import Database
from tonrail.rails.base import RailName
from tonrail.rails.models import RailHealth
from tonrail.rails.router import (
    Breaker,
    BreakerPolicy,
    RoutingPolicy,
    breaker_allows,
    breaker_on_error,
    breaker_on_probe,
    breaker_on_success,
)


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


def ton_up(health: Mapping[RailName, Breaker], now: datetime, policy: RoutingPolicy) -> bool:
    """May TON take payouts now? Not while its breaker is open and has not cooled down."""
    return breaker_allows(health.get("ton", Breaker()), now, policy.breaker)


async def note_ton_down(db: Database, policy: BreakerPolicy, error: str) -> Breaker:
    """The TON loop could not do its work (chain unreadable, no key): one error of `ton`."""
    async with db.transaction() as session:
        return await record_rail_error(session, "ton", policy, error)


async def note_ton_up(db: Database) -> None:
    """The TON loop read the chain: close the breaker of `ton` if it is not closed."""
    async with db.transaction() as session:
        row = await session.get(RailHealth, "ton")
        if row is not None and (row.state != "closed" or row.failures):
            await record_rail_success(session, "ton")
