"""Running the background loops (processing/loops.py): each claims its work with a lease,
runs it, heartbeats, and sleeps."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Sequence
from typing import Any

import structlog
from sqlalchemy import update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from tonrail import clock
from tonrail.db import Database
from tonrail.ids import new_id
from tonrail.kit.models import WorkerHeartbeat
from tonrail.models import metadata
from tonrail.payments.service import PaymentService
from tonrail.privacy.retention import run_batch
from tonrail.processing.context import TonRailContext
from tonrail.processing.loops import LOOPS as PROCESSING_LOOPS
from tonrail.processing.loops import Loop, WorkerContext
from tonrail.rails.registry import BackupRail
from tonrail.settings import Settings
from tonrail.webhooks.service import ProviderWebhooks

__all__ = ["LOOPS", "Loop", "WorkerContext", "run_worker", "select_loops", "worker_context"]


def worker_context(
    db: Database,
    settings: Settings,
    payments: PaymentService,
    worker_id: str,
    ton: TonRailContext | None,
    backup: dict[str, BackupRail],
) -> WorkerContext:
    """What the loops run with: the rails, and the Stripe catch-up when Stripe is configured."""
    catch_up = ProviderWebhooks(db, payments, backup).catch_up_new if "stripe" in backup else None
    return WorkerContext(db, settings, payments, worker_id, ton, backup, stripe_catch_up=catch_up)


log = structlog.get_logger(__name__)


async def retention(ctx: WorkerContext) -> int:
    """Once a day from RETENTION_HOUR_UTC, batch by batch: delete or pseudonymise what is
    past its retention period (privacy/retention.py; docs/PRIVACY.md)."""
    if not ctx.settings.retention_enabled:
        return 0
    return await run_batch(ctx.db, ctx.settings, ctx.worker_id)


# The pipeline's loops and the privacy one (registered here: privacy reads processing's
# tables, so processing cannot import it).
LOOPS: dict[str, Loop] = {**PROCESSING_LOOPS, "retention": Loop("retention", retention, 60.0)}


def default_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{new_id('w')[-6:]}"


async def heartbeat(ctx: WorkerContext, loop: str, processed: int) -> None:
    insert = pg_insert if ctx.db.dialect == "postgresql" else sqlite_insert
    stmt = insert(WorkerHeartbeat).values(
        worker_id=ctx.worker_id, loop=loop, beat_at=clock.now(), processed=processed
    )
    stmt = stmt.on_conflict_do_update(
        index_elements=["worker_id", "loop"],
        set_={
            "beat_at": stmt.excluded.beat_at,
            "processed": WorkerHeartbeat.processed + stmt.excluded.processed,
        },
    )
    async with ctx.db.transaction() as session:
        await session.execute(stmt)


async def run_loop(ctx: WorkerContext, loop: Loop, stop: asyncio.Event) -> None:
    """Run one loop until `stop`; an error is logged and the loop goes on after its interval."""
    while not stop.is_set():
        handled = 0
        try:
            handled = await loop.run(ctx)
        except Exception:
            log.exception("worker loop failed", loop=loop.name, worker=ctx.worker_id)
        # The loop is alive even when its round failed (a toncenter outage has its own alert);
        # a loop that stops beating is one that hangs or died.
        try:
            await heartbeat(ctx, loop.name, handled)
        except Exception:
            log.exception("worker heartbeat failed", loop=loop.name, worker=ctx.worker_id)
        if handled == 0:
            try:
                await asyncio.wait_for(stop.wait(), timeout=loop.interval_seconds)
            except TimeoutError:
                pass


def select_loops(only: Sequence[str] | None) -> list[Loop]:
    if not only:
        return list(LOOPS.values())
    unknown = [name for name in only if name not in LOOPS]
    if unknown:
        raise ValueError(f"unknown loops {unknown}; known: {sorted(LOOPS)}")
    return [LOOPS[name] for name in only]


async def release_leases(db: Database, worker_id: str) -> int:
    """Give back every lease `worker_id` holds, in every table that has leases.

    Called once the worker's loops have stopped (no round is in flight), so another worker
    takes the work at once instead of after `locked_until`: a rolling deploy does not pause
    payouts for a lease period. Rows leased to nobody or to someone else are left alone."""
    released = 0
    async with db.transaction() as session:
        for table in metadata.sorted_tables:
            if "locked_by" in table.c and "locked_until" in table.c:
                result: Any = await session.execute(
                    update(table)
                    .where(table.c.locked_by == worker_id)
                    .values(locked_by=None, locked_until=None)
                )
                released += int(result.rowcount or 0)
    return released


async def run_worker(ctx: WorkerContext, loops: Sequence[Loop], stop: asyncio.Event) -> None:
    """Run `loops` until `stop` is set; then release this worker's leases."""
    log.info("worker started", worker=ctx.worker_id, loops=[lp.name for lp in loops])
    try:
        await asyncio.gather(*(run_loop(ctx, loop, stop) for loop in loops))
    finally:
        try:
            released = await release_leases(ctx.db, ctx.worker_id)
        except Exception:
            log.exception("releasing the worker's leases failed", worker=ctx.worker_id)
        else:
            log.info("worker stopped", worker=ctx.worker_id, released_leases=released)
