"""Claims with a lease: disjoint under concurrency, taken over when a worker dies."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from tonrail import clock
from tonrail.db import Database
from tonrail.ids import new_id
from tonrail.kit.claims import claim, release
from tonrail.payments.models import Payment


async def _queued_payouts(db: Database, n: int) -> list[str]:
    now = clock.now()
    ids = [new_id("pay") for _ in range(n)]
    async with db.transaction() as session:
        session.add_all(
            Payment(
                id=pid,
                account_id="a",
                direction="out",
                status="queued",
                asset="TON",
                amount=1,
                usdt_equivalent=1,
                rate="5",
                rate_at=now,
                priority="normal",
                target_confirmation_seconds=60,
                metadata_={},
                requested_by="key:x",
                created_at=now,
                updated_at=now,
            )
            for pid in ids
        )
    return ids


async def _claim(db: Database, worker: str, limit: int, lease: float = 30) -> list[str]:
    async with db.transaction() as session:
        rows = await claim(
            session,
            Payment,
            Payment.status == "queued",
            worker_id=worker,
            lease_seconds=lease,
            limit=limit,
            order_by=(Payment.created_at,),
        )
        return [r.id for r in rows]


async def test_concurrent_workers_take_disjoint_rows(db: Database) -> None:
    ids = await _queued_payouts(db, 40)
    batches = await asyncio.gather(*(_claim(db, f"w{i}", 7) for i in range(8)))
    taken = [pid for batch in batches for pid in batch]
    assert len(taken) == len(set(taken)) == 40
    assert set(taken) == set(ids)


async def test_dead_workers_lease_expires_and_is_taken_over(db: Database) -> None:
    await _queued_payouts(db, 3)
    first = await _claim(db, "dead", 10, lease=30)
    assert len(first) == 3
    assert await _claim(db, "alive", 10) == []
    later = datetime.now(UTC) + timedelta(seconds=31)
    clock.set_clock(lambda: later)
    taken = await _claim(db, "alive", 10)
    assert sorted(taken) == sorted(first)
    async with db.transaction() as session:
        holders = {(await session.get(Payment, pid)).locked_by for pid in taken}  # type: ignore[union-attr]
    assert holders == {"alive"}


async def test_release_lets_others_claim_at_once(db: Database) -> None:
    await _queued_payouts(db, 2)
    mine = await _claim(db, "w1", 10)
    async with db.transaction() as session:
        await release(session, Payment, mine, "someone-else")
    assert await _claim(db, "w2", 10) == []
    async with db.transaction() as session:
        await release(session, Payment, mine, "w1")
    assert sorted(await _claim(db, "w2", 10)) == sorted(mine)


async def test_claimed_rows_come_back_in_the_order_asked(db: Database) -> None:
    # UPDATE ... RETURNING gives rows in whatever order the executor met them (on PostgreSQL
    # often not the subquery's); callers that send in that order (webhooks, by event sequence)
    # need the order they asked for.
    start = clock.now()
    ids = await _queued_payouts(db, 30)
    async with db.transaction() as session:
        for n, pid in enumerate(ids):
            row = await session.get(Payment, pid)
            assert row is not None
            row.created_at = start - timedelta(seconds=n)  # the last made is the oldest
            row.updated_at = start + timedelta(seconds=(n * 7) % 30)  # scatter the heap
    assert await _claim(db, "w1", 30) == list(reversed(ids))
