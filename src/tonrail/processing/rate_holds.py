"""Payouts held for a fresh exchange rate (`hold_reason = rate_stale`), released by the
`rate_holds` loop once one arrives.

A TON payout created while no fresh rate of TON is known (rates.py: stale past
RATE_MAX_AGE_SECONDS, or the source unreachable) cannot be counted against the limits, so it
is held: queued and leased to `rates` (no worker claims it), worth 0 against the day's volume
until valued. With a fresh rate it is valued, in one transaction: its USDT equivalent and rate
recorded, its daily volume reserved (over the limit: failed `daily_limit_exceeded`, nothing
sent), and above the approval threshold moved to `requires_approval`; otherwise its hold and
lease are cleared and it goes out as any queued payout. The alert `rate_stale` is open while
any is held.
"""

from __future__ import annotations

import structlog
from sqlalchemy import select

from tonrail.db import Database
from tonrail.errors import LimitExceeded
from tonrail.limits.rules import needs_approval
from tonrail.limits.service import reserve_daily_volume
from tonrail.payments.models import Payment
from tonrail.payments.service import PaymentService
from tonrail.payments.states import PaymentStatus
from tonrail.payments.transitions import move_payment
from tonrail.states import HoldReason

log = structlog.get_logger(__name__)

RELEASE_BATCH = 100  # held payouts valued per round


async def release_rate_holds(db: Database, payments: PaymentService) -> int:
    """Value and release the payouts held for a fresh rate; returns how many were released."""
    held = (Payment.status == PaymentStatus.QUEUED) & (Payment.hold_reason == HoldReason.RATE_STALE)
    async with db.transaction() as session:
        rows = (
            await session.execute(
                select(Payment.id, Payment.asset)
                .where(held)
                .order_by(Payment.created_at)
                .limit(RELEASE_BATCH)
            )
        ).all()
    if not rows:
        return 0
    await payments.rates.ensure()
    released = 0
    policy = payments.policy
    for payment_id, asset in rows:
        rate = payments.rates.fresh(asset)
        if rate is None:
            continue  # still stale: held, never guessed
        async with db.transaction() as session:
            p = await session.get(Payment, payment_id, with_for_update=True)
            if (
                p is None
                or p.status != PaymentStatus.QUEUED
                or p.hold_reason != HoldReason.RATE_STALE
            ):
                continue  # canceled or released meanwhile
            usdt = rate.usdt_equivalent(p.amount, p.asset)
            released += 1
            try:
                await reserve_daily_volume(
                    session, p.volume_day or "", usdt, policy.daily_volume_limit_usdt
                )
            except LimitExceeded as exc:
                log.warning("held payout over the daily limit", payment=p.id, usdt=usdt)
                await move_payment(
                    session,
                    p,
                    PaymentStatus.FAILED,
                    actor="system:rates",
                    failure_code="daily_limit_exceeded",
                    failure_message=exc.message,
                    values={"hold_reason": None, "locked_by": None, "locked_until": None},
                )
                continue
            values = {
                "usdt_equivalent": usdt,
                "rate": str(rate.usdt_per_unit),
                "rate_at": rate.at,
                "hold_reason": None,
                "locked_by": None,
                "locked_until": None,
            }
            if needs_approval(policy, usdt):
                await move_payment(
                    session, p, PaymentStatus.REQUIRES_APPROVAL, actor="system:rates", values=values
                )
            else:
                for name, value in values.items():
                    setattr(p, name, value)
            log.info("payout valued with a fresh rate", payment=p.id, usdt=usdt, rate=p.rate)
    return released
