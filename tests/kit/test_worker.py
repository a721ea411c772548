"""The worker's loop runner: a failing round still heartbeats; the loop goes on."""

from __future__ import annotations

import asyncio

from sqlalchemy import select

from tonrail.db import Database
from tonrail.kit.models import WorkerHeartbeat
from tonrail.payments.models import Payment
from tonrail.payments.service import PaymentService
from tonrail.settings import Settings
from tonrail.worker import Loop, WorkerContext, run_loop, run_worker


async def test_a_failing_round_still_heartbeats(db: Database, settings: Settings) -> None:
    rounds = 0
    stop = asyncio.Event()

    async def flaky(ctx: WorkerContext) -> int:
        nonlocal rounds
        rounds += 1
        if rounds >= 3:
            stop.set()
        raise RuntimeError("toncenter is down")

    ctx = WorkerContext(db, settings, PaymentService(db, settings), "w-flaky")
    await asyncio.wait_for(run_loop(ctx, Loop("flaky", flaky, 0.01), stop), timeout=30)
    assert rounds == 3
    async with db.transaction() as session:
        beat = (await session.execute(select(WorkerHeartbeat))).scalar_one()
    assert (beat.worker_id, beat.loop, beat.processed) == ("w-flaky", "flaky", 0)


async def test_a_stopping_worker_hands_its_leases_over_at_once(
    db: Database, settings: Settings
) -> None:
    """SIGTERM sets `stop`: the loops end their rounds, then every lease the worker holds is
    released, so another worker claims the work now, not after the hour-long lease."""
    from tests.kit.test_claims import _claim, _queued_payouts

    ids = await _queued_payouts(db, 3)
    stop = asyncio.Event()
    held: list[str] = []

    async def take_and_stop(ctx: WorkerContext) -> int:
        held.extend(await _claim(db, ctx.worker_id, 2, lease=3600))
        stop.set()  # what the SIGTERM handler does
        return len(held)

    other = await _claim(db, "w-other", 1, lease=3600)  # someone else's lease stays
    ctx = WorkerContext(db, settings, PaymentService(db, settings), "w-stopping")
    await asyncio.wait_for(run_worker(ctx, [Loop("take", take_and_stop, 0.01)], stop), 30)
    assert sorted(held + other) == sorted(ids)
    async with db.transaction() as session:
        rows = {p.id: p for p in (await session.execute(select(Payment))).scalars()}
    assert all(rows[pid].locked_by is None and rows[pid].locked_until is None for pid in held)
    assert rows[other[0]].locked_by == "w-other"
    assert sorted(await _claim(db, "w-successor", 10, lease=3600)) == sorted(held)
