"""Loop leases (kit/loop_lease.py): one worker at a time holds a loop; the holder renews,
a standby takes over when the lease ends or is handed back, and asks the database seldom."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, update

from tonrail import clock
from tonrail.db import Database
from tonrail.kit.loop_lease import STANDBY_CHECK_S, LoopLeases, take_or_renew
from tonrail.kit.models import LoopLease
from tonrail.worker import release_leases


@pytest.fixture
def now() -> Iterator[list[datetime]]:
    """A clock the test moves: `now[0]` is the time."""
    t = [datetime(2026, 12, 5, 12, 0, tzinfo=UTC)]
    clock.set_clock(lambda: t[0])
    yield t
    clock.set_clock(None)


async def holder(db: Database, name: str = "ton_payouts") -> tuple[str | None, datetime | None]:
    async with db.transaction() as session:
        row = (await session.execute(select(LoopLease).where(LoopLease.name == name))).scalar_one()
        return row.locked_by, row.locked_until


async def test_one_holder_at_a_time_until_its_lease_ends(db: Database, now: list[datetime]) -> None:
    assert await take_or_renew(db, "ton_payouts", "w-a", 10)
    assert not await take_or_renew(db, "ton_payouts", "w-b", 10)
    assert await holder(db) == ("w-a", now[0] + timedelta(seconds=10))
    # The holder renews; the lease runs from the renewal.
    now[0] += timedelta(seconds=9)
    assert await take_or_renew(db, "ton_payouts", "w-a", 10)
    now[0] += timedelta(seconds=9)
    assert not await take_or_renew(db, "ton_payouts", "w-b", 10)
    # It died: once its lease is over the standby takes the loop, and the old holder is out.
    now[0] += timedelta(seconds=1, microseconds=1)
    assert await take_or_renew(db, "ton_payouts", "w-b", 10)
    assert not await take_or_renew(db, "ton_payouts", "w-a", 10)
    assert (await holder(db))[0] == "w-b"
    # Another loop's lease is another row.
    assert await take_or_renew(db, "other_loop", "w-a", 10)


async def test_a_stopping_worker_hands_the_loop_over_at_once(
    db: Database, now: list[datetime]
) -> None:
    assert await take_or_renew(db, "ton_payouts", "w-a", 3600)
    assert await release_leases(db, "w-a") == 1  # as every lease, when the worker stops
    assert await holder(db) == (None, None)
    assert await take_or_renew(db, "ton_payouts", "w-b", 3600)


async def test_the_holder_writes_once_per_half_lease_and_a_standby_once_per_check(
    db: Database,
) -> None:
    a, b = LoopLeases(), LoopLeases()
    seconds = 0.4
    assert await a.hold(db, "ton_payouts", "w-a", seconds)
    assert not await b.hold(db, "ton_payouts", "w-b", seconds)
    assert 0 < b.standby_wait("ton_payouts") <= seconds / 2
    assert a.standby_wait("ton_payouts") == 0
    # The lease is handed to b behind a's back (as if a had overrun it): a trusts its lease
    # for half its length without asking, b waits for its next check.
    async with db.transaction() as session:
        await session.execute(update(LoopLease).values(locked_by=None, locked_until=None))
    assert await a.hold(db, "ton_payouts", "w-a", seconds)
    assert not await b.hold(db, "ton_payouts", "w-b", seconds)
    assert await holder(db) == (None, None)  # nobody wrote
    await asyncio.sleep(seconds / 2 + 0.01)
    # Half the lease is over: a asks and renews; b's check (min(1 s, half a lease)) is due
    # too, and finds the lease held.
    assert min(STANDBY_CHECK_S, seconds / 2) == seconds / 2
    assert await a.hold(db, "ton_payouts", "w-a", seconds)
    assert (await holder(db))[0] == "w-a"
    assert not await b.hold(db, "ton_payouts", "w-b", seconds)


async def test_without_a_lease_every_worker_runs_the_loop(db: Database) -> None:
    a, b = LoopLeases(), LoopLeases()
    assert await a.hold(db, "ton_payouts", "w-a", 0)
    assert await b.hold(db, "ton_payouts", "w-b", 0)
    async with db.transaction() as session:
        assert (await session.execute(select(LoopLease))).first() is None


async def test_a_round_longer_than_the_lease_keeps_it(db: Database) -> None:
    """Found by `make bench` with 2 workers: a payout round that kept assembling through a
    backlog outlived its lease, the standby took the loop in the middle, and both ran."""
    a, b = LoopLeases(), LoopLeases()
    seconds = 0.4
    assert await a.hold(db, "ton_payouts", "w-a", seconds)
    async with a.kept(db, "ton_payouts", "w-a", seconds):
        for _ in range(10):  # 1 s: two and a half leases
            await asyncio.sleep(0.1)
            b.retry_at.clear()
            assert not await b.hold(db, "ton_payouts", "w-b", seconds)
    assert (await holder(db))[0] == "w-a"
    # Once the round is over nobody renews: the lease ends and the standby takes it.
    await asyncio.sleep(seconds + 0.05)
    b.retry_at.clear()
    assert await b.hold(db, "ton_payouts", "w-b", seconds)
