"""Driving payouts on the backup rails: start attempts the router chose, submit, poll.

TON payouts have their own batching loop (ton_loop.py), which also asks the router
(rails/router.py) about every payout it claims; the payouts it routes elsewhere land here.
Every step is repeatable: an attempt's provider request (with its idempotency key
`{payment_id}:{n}`) is stored before it is submitted, a `created` attempt found after a crash
is submitted again with the same key, and a failed attempt sends the payout back to the router,
which never picks a rail that failed it before.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import structlog
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from tonrail.db import Database
from tonrail.kit.claims import claim
from tonrail.monitoring import signals
from tonrail.payments.attempts import attempt_view, payment_view
from tonrail.payments.models import Attempt, Payment
from tonrail.payments.service import PaymentService
from tonrail.payments.states import (
    FAILED_ATTEMPT_STATES,
    LIVE_ATTEMPT_STATES,
    AttemptStatus,
    PaymentStatus,
)
from tonrail.payments.transitions import move_payment, start_attempt
from tonrail.processing.health import record_rail_error, record_rail_probe, record_rail_success
from tonrail.processing.outcomes import record_poll, record_submit
from tonrail.processing.payer_screening import screen_payer
from tonrail.rails.base import REFUND_OF_KEYS, SubmitResult
from tonrail.rails.registry import BackupRail
from tonrail.rails.router import RoutingPolicy
from tonrail.security.switches import is_on
from tonrail.settings import Settings
from tonrail.states import PollStatus

log = structlog.get_logger(__name__)


@dataclass
class BackupContext:
    db: Database
    settings: Settings
    payments: PaymentService
    rails: Mapping[str, BackupRail]
    routing: RoutingPolicy
    worker_id: str


async def start_routed(ctx: BackupContext) -> int:
    """Start an attempt for each payout the router sent to a backup rail, and submit it."""
    async with ctx.db.transaction() as session:
        routed = await claim(
            session,
            Payment,
            (Payment.direction == "out")
            & (Payment.status == PaymentStatus.QUEUED)
            & Payment.route.in_(list(ctx.rails)),
            # The worker's lease, as every claim takes it: alike other claims in shape only.
            worker_id=ctx.worker_id,
            lease_seconds=ctx.settings.worker_lease_seconds,
            limit=ctx.settings.worker_batch_size,
            order_by=(Payment.created_at,),
        )
    started = 0
    for p in routed:
        rail = ctx.rails[p.route or ""]
        async with ctx.db.transaction() as session:
            payment = await session.get(Payment, p.id, with_for_update=True)
            if (
                payment is None
                or payment.status != PaymentStatus.QUEUED
                or payment.route != p.route
            ):
                continue
            await move_payment(session, payment, PaymentStatus.PROCESSING, actor="system:router")
            attempt = await start_attempt(
                session, payment, p.route or "", {"reason": payment.route_reason or "routed"}
            )
            await record_rail_probe(session, attempt.rail, ctx.routing.breaker)
            details = await rail.prepare(payment_view(payment), attempt_view(attempt))
            attempt.details = {**attempt.details, **details}
            attempt_id = attempt.id
        await _submit(ctx, attempt_id)
        started += 1
    return started


async def _submit(ctx: BackupContext, attempt_id: str) -> None:
    async with ctx.db.transaction() as session:
        attempt = await session.get(Attempt, attempt_id)
        payment = await session.get(Payment, attempt.payment_id) if attempt else None
        if attempt is None or payment is None or attempt.status != AttemptStatus.CREATED:
            return
        rail_name, pview, aview = attempt.rail, payment_view(payment), attempt_view(attempt)
    try:
        result = await ctx.rails[rail_name].submit(pview, aview)
    except Exception as exc:
        # We cannot tell whether the provider acted: unknown, and poll before anything else.
        log.warning("backup submit failed", attempt=attempt_id, rail=rail_name, error=str(exc))
        result = SubmitResult(
            AttemptStatus.UNKNOWN, error_code="submit_error", error_message=str(exc)[:300]
        )
    async with ctx.db.transaction() as session:
        attempt = await session.get(Attempt, attempt_id, with_for_update=True)
        if attempt is None or attempt.status != AttemptStatus.CREATED:
            return
        await record_submit(session, ctx.settings, attempt, result)
        if result.status == AttemptStatus.UNKNOWN:
            await record_rail_error(
                session, rail_name, ctx.routing.breaker, result.error_code or "unknown"
            )
            signals.record_provider_call(rail_name, False, result.error_code or "unknown")
        else:
            await record_rail_success(session, rail_name)
            signals.record_provider_call(rail_name, True)
        if result.status == AttemptStatus.FAILED:  # record_submit failed the attempt
            await _back_to_router(ctx, session, attempt.payment_id)


async def poll_live(ctx: BackupContext, *, paused: bool = False) -> int:
    """Poll every live backup attempt; resubmit `created` ones left by a crash (not while
    payments are paused: a submit sends money)."""
    async with ctx.db.transaction() as session:
        rows = (
            await session.execute(
                select(Attempt.id, Attempt.status)
                .where(
                    Attempt.rail.in_(list(ctx.rails)),
                    Attempt.status.in_(LIVE_ATTEMPT_STATES),
                )
                .order_by(Attempt.updated_at)
                .limit(ctx.settings.worker_batch_size)
            )
        ).all()
    finals = 0
    for attempt_id, status in rows:
        if status == AttemptStatus.CREATED:
            if not paused:
                await _submit(ctx, attempt_id)
            continue
        async with ctx.db.transaction() as session:
            attempt = await session.get(Attempt, attempt_id)
            payment = await session.get(Payment, attempt.payment_id) if attempt else None
            if attempt is None or payment is None:
                continue
            # Loaded as _submit loads them, alike in shape only: the call and its failure differ.
            rail_name, pview, aview = attempt.rail, payment_view(payment), attempt_view(attempt)
        try:
            result = await ctx.rails[rail_name].poll(pview, aview)
        except Exception as exc:
            log.warning("backup poll failed", attempt=attempt_id, rail=rail_name, error=str(exc))
            async with ctx.db.transaction() as session:
                await record_rail_error(session, rail_name, ctx.routing.breaker, "poll_error")
            signals.record_provider_call(rail_name, False, "poll_error")
            continue
        signals.record_provider_call(rail_name, True)
        # An invoice's payer is screened before the transaction (a provider may be slow).
        screened = (
            await screen_payer(
                ctx.payments, pview.direction, pview.asset, pview.amount, rail_name, result.details
            )
            if result.status == PollStatus.CONFIRMED
            else None
        )
        async with ctx.db.transaction() as session:
            attempt = await session.get(Attempt, attempt_id, with_for_update=True)
            if attempt is None:
                continue
            outcome = await record_poll(session, ctx.payments, attempt, result, screened=screened)
            if outcome in FAILED_ATTEMPT_STATES:
                await _back_to_router(ctx, session, attempt.payment_id)
            if outcome in FAILED_ATTEMPT_STATES or attempt.status == AttemptStatus.CONFIRMED:
                finals += 1
    return finals


async def _back_to_router(ctx: BackupContext, session: AsyncSession, payment_id: str) -> None:
    """A backup attempt failed: the payout goes back, unrouted, for the router's next pick."""

    payment = await session.get(Payment, payment_id, with_for_update=True)
    if payment is None or payment.status != PaymentStatus.PROCESSING:
        return
    if any(key in (payment.metadata_ or {}) for key in REFUND_OF_KEYS):
        # A refund has one way back, the payment it refunds: no other rail can take it.
        await move_payment(
            session,
            payment,
            PaymentStatus.FAILED,
            actor="system:router",
            failure_code="refund_refused",
            failure_message="the provider refused the refund",
        )
        return
    await move_payment(session, payment, PaymentStatus.QUEUED, actor="system:router")
    await session.execute(
        update(Payment)
        .where(Payment.id == payment_id)
        .values(route=None, route_reason=None, locked_by=None, locked_until=None)
    )


async def backup_round(ctx: BackupContext) -> int:
    """One turn of the backup loop: start and submit (unless payments are paused), poll."""
    if not ctx.rails:
        return 0
    async with ctx.db.transaction() as session:
        paused = await is_on(session, "payments_paused")
    started = 0 if paused else await start_routed(ctx)
    return started + await poll_live(ctx, paused=paused)
