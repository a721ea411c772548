"""Background loops: each claims its work with a lease, runs it, heartbeats, and sleeps."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog
from sqlalchemy import update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from tonrail import clock
from tonrail.db import Database
from tonrail.fees.sampler import sample_if_due
from tonrail.ids import new_id
from tonrail.kit.claims import claim
from tonrail.kit.models import WorkerHeartbeat
from tonrail.models import metadata
from tonrail.monitoring import jobs as monitoring
from tonrail.payments.models import Payment
from tonrail.payments.processing import BackupContext, backup_round
from tonrail.payments.service import PaymentService
from tonrail.rails.registry import routing_policy
from tonrail.rails.ton.deposits import watch_deposits
from tonrail.rails.ton.payouts import TonRailContext, payout_round
from tonrail.rails.ton.reconcile import reconcile_loop
from tonrail.settings import Settings

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class WorkerContext:
    db: Database
    settings: Settings
    payments: PaymentService
    worker_id: str
    ton: TonRailContext | None = None  # None when no hot wallet key is configured
    backup: Mapping[str, Any] = field(default_factory=dict)  # configured backup rails


LoopFn = Callable[[WorkerContext], Awaitable[int]]


@dataclass(frozen=True)
class Loop:
    """A named unit of background work; `run` returns how many items it handled."""

    name: str
    run: LoopFn
    interval_seconds: float


async def expire_invoices(ctx: WorkerContext) -> int:
    """Move unpaid invoices past their expiry to `expired`."""
    now = clock.now()
    async with ctx.db.transaction() as session:
        due = await claim(
            session,
            Payment,
            (Payment.direction == "in")
            & (Payment.status == "awaiting_payment")
            & (Payment.expires_at <= now),
            worker_id=ctx.worker_id,
            lease_seconds=ctx.settings.worker_lease_seconds,
            limit=ctx.settings.worker_batch_size,
            order_by=(Payment.expires_at,),
        )
    done = 0
    for payment in due:
        async with ctx.db.transaction() as session:
            fresh = await session.get(Payment, payment.id)
            if fresh is None or fresh.status != "awaiting_payment":
                continue
            await ctx.payments.transition(session, fresh, "expired", actor="system:worker")
            done += 1
    return done


async def ton_payouts(ctx: WorkerContext) -> int:
    """Assemble, sign, send and track TON payouts (rails/ton/payouts.py)."""
    return await payout_round(ctx.ton) if ctx.ton is not None else 0


async def ton_reconcile(ctx: WorkerContext) -> int:
    """Compare the hot wallet's books with the chain; a difference is an error event."""
    return await reconcile_loop(ctx.ton) if ctx.ton is not None else 0


async def backup_payouts(ctx: WorkerContext) -> int:
    """Start, submit and poll payouts the router sent to Stripe, PayPal or bank."""
    if not ctx.backup:
        return 0
    backup = BackupContext(
        ctx.db, ctx.settings, ctx.payments, ctx.backup, routing_policy(ctx.settings), ctx.worker_id
    )
    return await backup_round(backup)


async def ton_deposits(ctx: WorkerContext) -> int:
    """Read the receiving wallet's new transactions and credit invoices."""
    return await watch_deposits(ctx.ton) if ctx.ton is not None else 0


async def fee_sampler(ctx: WorkerContext) -> int:
    """Sample TON network conditions for the fee optimizer every FEES_SAMPLE_SECONDS."""
    ton = ctx.ton
    wallet, jetton = (ton.wallet, ton.jetton_wallet) if ton is not None else (None, None)
    return await sample_if_due(ctx.db, ctx.settings, ctx.worker_id, wallet, jetton)


LOOPS: dict[str, Loop] = {
    loop.name: loop
    for loop in (
        Loop("expire_invoices", expire_invoices, 5.0),
        Loop("ton_payouts", ton_payouts, 0.2),
        Loop("ton_deposits", ton_deposits, 0.5),
        Loop("ton_reconcile", ton_reconcile, 30.0),
        Loop("backup_payouts", backup_payouts, 1.0),
        Loop("fee_sampler", fee_sampler, 1.0),  # samples every FEES_SAMPLE_SECONDS
        # Monitoring (docs/monitoring.md); intervals stay below ALERT_HEARTBEAT_STALE_SECONDS.
        Loop("evaluate_alerts", monitoring.evaluate_alerts, 2.0),
        Loop("publish_signals", monitoring.publish_signals, 2.0),
        Loop("publish_cloudwatch", monitoring.publish_cloudwatch, 30.0),
        Loop("security_audit", monitoring.security_audit, 30.0),
    )
}


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
