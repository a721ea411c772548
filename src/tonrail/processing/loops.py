"""The loop registry: every background loop of the worker, what it runs and how often.

worker.py runs them (leases, heartbeats, sleeping); `tonrail worker --only a,b` runs a
subset. The payout loops: `dispatch_payouts` (dispatch.py), `ton_payouts` (ton_loop.py),
`backup_payouts` (backup_loop.py); see docs/ARCHITECTURE.md for one payout's walk.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from tonrail import clock
from tonrail.db import Database
from tonrail.fees.sampler import sample_if_due
from tonrail.kit.claims import claim
from tonrail.kit.loop_lease import LoopLeases
from tonrail.monitoring import jobs as monitoring
from tonrail.monitoring import signals
from tonrail.notify.delivery import backlog, deliver_round
from tonrail.notify.publish import publish_round
from tonrail.payments.models import Payment
from tonrail.payments.service import PaymentService
from tonrail.payments.states import PaymentStatus
from tonrail.payments.transitions import move_payment
from tonrail.processing.backup_loop import BackupContext, backup_round
from tonrail.processing.context import TonRailContext
from tonrail.processing.deposits import watch_deposits
from tonrail.processing.dispatch import Routing, dispatch_round
from tonrail.processing.health import note_ton_down
from tonrail.processing.rate_holds import release_rate_holds
from tonrail.processing.reconcile import reconcile_loop
from tonrail.processing.ton_loop import ton_round
from tonrail.processing.treasury_loop import treasury_round
from tonrail.processing.treasury_reconcile import reconcile_treasury
from tonrail.rails.registry import enabled_rails, routing_policy
from tonrail.security import idempotency
from tonrail.settings import Settings

NO_KEY_NOTE_EVERY_S = 5.0  # an idle TON loop tells the breaker of `ton` at most this often
BACKLOG_EVERY_S = 2.0  # the webhook sender reports its backlog at most this often


@dataclass(frozen=True)
class WorkerContext:
    db: Database
    settings: Settings
    payments: PaymentService
    worker_id: str
    ton: TonRailContext | None = None  # None when no hot wallet key is configured
    backup: Mapping[str, Any] = field(default_factory=dict)  # configured backup rails
    # monotonic time of the last note that the TON loops idle (no hot wallet key), and of
    # the last Stripe catch-up
    noted: dict[str, float] = field(default_factory=dict)
    # The loop leases this worker holds or waits for (kit/loop_lease.py)
    leases: LoopLeases = field(default_factory=LoopLeases)
    # Stores and processes Stripe's recent events, returns how many were new (bound by
    # worker.py: `worker_context`, when the Stripe rail is configured)
    stripe_catch_up: Callable[[], Awaitable[int]] | None = None


LoopFn = Callable[[WorkerContext], Awaitable[int]]


@dataclass(frozen=True)
class Loop:
    """A named unit of background work; `run` returns how many items it handled."""

    name: str
    run: LoopFn
    interval_seconds: float


async def expire_invoices(ctx: WorkerContext) -> int:
    """Move unpaid invoices past their expiry to `expired`; delete a batch of idempotency
    records older than IDEMPOTENCY_TTL_HOURS (their keys are new requests again)."""
    async with ctx.db.transaction() as session:
        forgotten = await idempotency.delete_expired(
            session, ctx.settings.idempotency_ttl_hours, ctx.settings.worker_batch_size
        )
    return forgotten + await _expire_due_invoices(ctx)


async def _expire_due_invoices(ctx: WorkerContext) -> int:
    now = clock.now()
    async with ctx.db.transaction() as session:
        due = await claim(
            session,
            Payment,
            (Payment.direction == "in")
            & (Payment.status == PaymentStatus.AWAITING_PAYMENT)
            & (Payment.expires_at <= now),
            # The worker's lease, as every claim takes it: alike other claims in shape only.
            worker_id=ctx.worker_id,
            lease_seconds=ctx.settings.worker_lease_seconds,
            limit=ctx.settings.worker_batch_size,
            order_by=(Payment.expires_at,),
        )
    done = 0
    for payment in due:
        async with ctx.db.transaction() as session:
            fresh = await session.get(Payment, payment.id)
            if fresh is None or fresh.status != PaymentStatus.AWAITING_PAYMENT:
                continue
            await move_payment(session, fresh, PaymentStatus.EXPIRED, actor="system:worker")
            done += 1
    return done


async def ton_payouts(ctx: WorkerContext) -> int:
    """Route, assemble, sign, send and track TON payouts (ton_loop.py). Without a hot wallet
    key the loop idles, and says so to the breaker of `ton`: dispatch_payouts then sends
    queued payouts to a backup rail.

    One worker at a time runs it (TON_PAYOUTS_LEASE_SECONDS; kit/loop_lease.py): the others
    stand by and take over when the holder stops or its lease runs out."""
    if ctx.ton is not None:
        seconds = ctx.settings.ton_payouts_lease_seconds
        if not await ctx.leases.hold(ctx.db, "ton_payouts", ctx.worker_id, seconds):
            # Standing by: the round lasts until the next check (a heartbeat a second, not
            # five; a stopping worker waits at most that long for it).
            await asyncio.sleep(ctx.leases.standby_wait("ton_payouts"))
            return 0
        async with ctx.leases.kept(ctx.db, "ton_payouts", ctx.worker_id, seconds):
            return await ton_round(ctx.ton)
    if time.monotonic() - ctx.noted.get("ton", float("-inf")) >= NO_KEY_NOTE_EVERY_S:
        ctx.noted["ton"] = time.monotonic()
        breaker = routing_policy(ctx.settings).breaker
        # Not a passing fault: open the breaker at once (and keep it open while idle).
        await note_ton_down(ctx.db, replace(breaker, failure_threshold=1), "no hot wallet key")
    return 0


async def treasury_payouts(ctx: WorkerContext) -> int:
    """Propose and follow the multisig orders of payouts paid from the treasury
    (treasury_loop.py); needs the hot wallet, the treasury's proposer."""
    return await treasury_round(ctx.ton) if ctx.ton is not None else 0


async def dispatch_payouts(ctx: WorkerContext) -> int:
    """Route the queued payouts TON cannot take now to a backup rail (dispatch.py)."""
    routing = Routing(
        ctx.settings,
        ctx.payments,
        ctx.backup,
        routing_policy(ctx.settings),
        enabled_rails(ctx.settings),
    )
    return await dispatch_round(ctx.db, routing, ctx.worker_id)


async def ton_reconcile(ctx: WorkerContext) -> int:
    """Compare the hot wallet's books with the chain, then the treasury's (with
    TREASURY_ADDRESS); a difference is an event and a critical alert."""
    if ctx.ton is None:
        return 0
    await reconcile_loop(ctx.ton)
    await reconcile_treasury(ctx.ton)
    return 0


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


async def stripe_catch_up(ctx: WorkerContext) -> int:
    """Every STRIPE_CATCH_UP_SECONDS (0 = never): Stripe's recent events from its API, stored
    and processed like late webhooks (a webhook that never arrived settles the payment)."""
    every = ctx.settings.stripe_catch_up_seconds
    if ctx.stripe_catch_up is None or every <= 0:
        return 0
    if time.monotonic() - ctx.noted.get("stripe_catch_up", float("-inf")) < every:
        return 0
    ctx.noted["stripe_catch_up"] = time.monotonic()
    return await ctx.stripe_catch_up()


async def fee_sampler(ctx: WorkerContext) -> int:
    """Sample TON network conditions for the fee optimizer every FEES_SAMPLE_SECONDS."""
    ton = ctx.ton
    wallet, jetton = (ton.wallet, ton.jetton_wallet) if ton is not None else (None, None)
    return await sample_if_due(ctx.db, ctx.settings, ctx.worker_id, wallet, jetton)


async def rate_holds(ctx: WorkerContext) -> int:
    """Release the payouts held for a fresh exchange rate (rate_holds.py)."""
    return await release_rate_holds(ctx.db, ctx.payments)


async def publish_events(ctx: WorkerContext) -> int:
    """Publish outbox events: their data, and a delivery per subscribed webhook endpoint."""
    return await publish_round(ctx.db, ctx.settings, ctx.payments, ctx.worker_id)


async def deliver_webhooks(ctx: WorkerContext) -> int:
    """Send due webhook deliveries to merchants (notify/delivery.py, docs/WEBHOOKS.md), and
    report the backlog to monitoring every BACKLOG_EVERY_S."""
    sent = await deliver_round(ctx.db, ctx.settings, ctx.worker_id)
    if time.monotonic() - ctx.noted.get("webhooks", float("-inf")) >= BACKLOG_EVERY_S:
        ctx.noted["webhooks"] = time.monotonic()
        signals.set_webhook_backlog(*await backlog(ctx.db))
    return sent


LOOPS: dict[str, Loop] = {
    loop.name: loop
    for loop in (
        Loop("expire_invoices", expire_invoices, 5.0),
        Loop("dispatch_payouts", dispatch_payouts, 1.0),
        Loop("rate_holds", rate_holds, 5.0),  # reads the rate source every RATE_REFRESH_SECONDS
        Loop("ton_payouts", ton_payouts, 0.2),
        Loop("treasury_payouts", treasury_payouts, 0.5),
        Loop("ton_deposits", ton_deposits, 0.5),
        Loop("ton_reconcile", ton_reconcile, 30.0),
        Loop("backup_payouts", backup_payouts, 1.0),
        Loop("stripe_catch_up", stripe_catch_up, 5.0),  # every STRIPE_CATCH_UP_SECONDS
        Loop("fee_sampler", fee_sampler, 1.0),  # samples every FEES_SAMPLE_SECONDS
        # Merchant webhooks (docs/WEBHOOKS.md).
        Loop("publish_events", publish_events, 0.5),
        Loop("deliver_webhooks", deliver_webhooks, 0.5),
        # Monitoring (docs/monitoring.md); intervals stay below ALERT_HEARTBEAT_STALE_SECONDS.
        Loop("evaluate_alerts", monitoring.evaluate_alerts, 2.0),
        Loop("publish_signals", monitoring.publish_signals, 2.0),
        Loop("publish_cloudwatch", monitoring.publish_cloudwatch, 30.0),
        Loop("security_audit", monitoring.security_audit, 30.0),
    )
}
