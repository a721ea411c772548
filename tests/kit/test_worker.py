"""The worker's loop runner: a failing round still heartbeats; the loop goes on."""

from __future__ import annotations

import asyncio

from sqlalchemy import select

from tonrail.db import Database
from tonrail.kit.models import WorkerHeartbeat
from tonrail.payments.service import PaymentService
from tonrail.settings import Settings
from tonrail.worker import Loop, WorkerContext, run_loop


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
