"""A TON batch: when its payouts go (the fee optimizer's timing) and whether the hot wallet can
pay them; the fees TON quotes, from recent history."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import structlog
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from tonrail import clock
from tonrail.chain.network import GasCaps
from tonrail.db import Database
from tonrail.events.service import emit
from tonrail.fees.policy import FeeDecision, jetton_attach_retry
from tonrail.fees.service import (
    FeeConditions,
    decide_for_batch,
)
from tonrail.monitoring import signals
from tonrail.payments.models import Attempt, Payment
from tonrail.payments.states import PaymentStatus
from tonrail.processing.context import TonRailContext
from tonrail.processing.dispatch import PRIORITY_ORDER, set_columns
from tonrail.rails.ton.api import jetton_balance
from tonrail.rails.ton.models import TonRequest, TonTransfer
from tonrail.rails.ton.states import RequestStatus, TransferStatus
from tonrail.settings import Settings
from tonrail.states import JETTON_ATTACH_LOW, HoldReason

log = structlog.get_logger(__name__)


FEE_RESERVE_NANOTON = 20_000_000  # kept back per transfer for fees when checking funds


def attach_for(ctx: TonRailContext, decision: FeeDecision | None, floor: int = 0) -> int:
    """TON to attach to a jetton transfer: the optimizer's figure, else the configured one;
    at least `floor` (a retry's, `retry_attaches`)."""
    if decision is not None and decision.jetton_attach_nanoton > 0:
        return max(decision.jetton_attach_nanoton, floor)
    return max(ctx.settings.ton_jetton_attach_nanoton, floor)


def attach_retry_limit(settings: Settings, caps: GasCaps) -> int:
    """The most TON a retry attaches after a refusal (`retry_attaches`):
    FEES_JETTON_ATTACH_MAX_NANOTON, and never above the gas cap (a payout over it is held)."""
    limit = settings.fees_jetton_attach_max_nanoton
    if caps.jetton_transfer_attach > 0:
        limit = min(limit, caps.jetton_transfer_attach)
    return limit


async def retry_attaches(
    ctx: TonRailContext, session: AsyncSession, claimed: list[Payment]
) -> dict[str, int]:
    """The TON to attach, at least, to claimed USDT payouts our jetton wallet refused before
    for too little TON (error JETTON_ATTACH_LOW, outcomes.py): twice the most it refused, at
    most `attach_retry_limit` (`jetton_attach_retry`). One statement for the lot."""
    usdt = [p.id for p in claimed if p.asset != "TON"]
    if not usdt:
        return {}
    rows = (
        await session.execute(
            select(TonTransfer.payment_id, func.max(TonTransfer.message_value))
            .join(Attempt, Attempt.id == TonTransfer.attempt_id)
            .where(TonTransfer.payment_id.in_(usdt), Attempt.error_code == JETTON_ATTACH_LOW)
            .group_by(TonTransfer.payment_id)
        )
    ).all()
    limit = attach_retry_limit(ctx.settings, ctx.gas_caps)
    floors: dict[str, int] = {}
    for payment_id, refused in rows:
        # None: the refused attach was already the limit; outcomes.py then failed the payout,
        # so a claimed payout gets here only if the limit was lowered since: attach the limit.
        floors[payment_id] = jetton_attach_retry(int(refused), limit) or limit
    return floors


async def chain_balances(ctx: TonRailContext) -> dict[str, int]:
    """The hot wallet's balances on chain (read before any database lock is taken)."""
    _, ton = await ctx.api.account_state(ctx.wallet.address.to_str())
    usdt = await jetton_balance(ctx.api, ctx.jetton_wallet) if ctx.jetton_wallet else 0
    signals.set_hot_wallet_balance("TON", ton)
    if ctx.jetton_wallet:
        signals.set_hot_wallet_balance("USDT", usdt)
    return {"TON": ton, "USDT": usdt}


async def in_flight_left(session: AsyncSession, chain: dict[str, int]) -> dict[str, int]:
    """Hot wallet balances minus what signed requests not yet executed will take."""
    ton, usdt = chain["TON"], chain["USDT"]
    in_flight = (
        await session.execute(
            select(TonTransfer.asset, TonTransfer.amount, TonTransfer.message_value)
            .join(TonRequest, TonRequest.id == TonTransfer.request_id)
            .where(TonRequest.status.in_((RequestStatus.SIGNED, RequestStatus.SENT)))
        )
    ).all()
    for asset, amount, value in in_flight:
        ton -= value + FEE_RESERVE_NANOTON
        if asset == "USDT":
            usdt -= amount
    return {"TON": ton, "USDT": usdt}


# Marks a payout that is ready but waits for company (its lease ends at the batch's send_by):
# any request that goes before takes it along.
WINDOW_LEASE = "fees:batch_window"


async def timing(
    ctx: TonRailContext,
    session: AsyncSession,
    claimed: list[Payment],
    decisions: dict[str, FeeDecision],
    conditions: FeeConditions | None,
) -> list[Payment]:
    """The optimizer's timing: a payout goes no earlier than `send_at`; a batch goes once one
    of its payouts reaches `send_by` (its window for company) or the batch is full, and then
    with every payout that is ready and waiting. Payouts that must wait are leased until
    their moment, so no round re-decides them before; those only waiting for company are
    marked (`WINDOW_LEASE`) so that an earlier request takes them along.
    Without the optimizer (`fee_optimizer=False`) every claimed payout goes at once."""
    if conditions is None:
        return claimed[: ctx.settings.ton_batch_max]
    now = clock.now()
    ready = [p for p in claimed if decisions[p.id].send_at <= now]
    held = [p for p in claimed if decisions[p.id].send_at > now]
    batch_max = min((decisions[p.id].batch_max for p in ready), default=ctx.settings.ton_batch_max)
    due = len(ready) >= batch_max or any(decisions[p.id].send_by <= now for p in ready)
    leases: dict[tuple[Any, ...], list[Payment]] = {}
    for p in held:
        leases.setdefault((None, decisions[p.id].send_at), []).append(p)
    if not due:
        first = min((decisions[p.id].send_by for p in ready), default=None)
        if ready and first is not None:
            leases.setdefault((WINDOW_LEASE, first), []).extend(ready)
        await set_columns(session, leases, ("locked_by", "locked_until"))
        return []
    if len(ready) < batch_max:
        ready += await _waiting_company(
            ctx, session, decisions, conditions, batch_max - len(ready), leases
        )
    batch, rest = ready[:batch_max], ready[batch_max:]
    if rest:
        leases.setdefault((None, None), []).extend(rest)
    await set_columns(session, leases, ("locked_by", "locked_until"))
    return batch


async def _waiting_company(
    ctx: TonRailContext,
    session: AsyncSession,
    decisions: dict[str, FeeDecision],
    conditions: FeeConditions,
    room: int,
    leases: dict[tuple[Any, ...], list[Payment]],
) -> list[Payment]:
    """Payouts waiting for company (`WINDOW_LEASE`), claimed now that a request goes; each
    decided again, and left to wait if it must now be held."""
    now = clock.now()
    candidates = (
        select(Payment.id)
        .where(
            Payment.direction == "out",
            Payment.status == PaymentStatus.QUEUED,
            Payment.route == "ton",
            Payment.locked_by == WINDOW_LEASE,
        )
        .order_by(Payment.created_at)
        .limit(room)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    joined = list(
        (
            await session.execute(
                update(Payment)
                .where(Payment.id.in_(candidates), Payment.locked_by == WINDOW_LEASE)
                .values(
                    locked_by=ctx.worker_id,
                    locked_until=now + timedelta(seconds=ctx.settings.worker_lease_seconds),
                )
                .returning(Payment)
                .execution_options(synchronize_session=False)
            )
        ).scalars()
    )
    if not joined:
        return []
    joined.sort(key=lambda p: (PRIORITY_ORDER.get(p.priority, 1), p.created_at))
    decisions.update(await decide_for_batch(session, conditions, ctx.settings, joined))
    for p in joined:
        if decisions[p.id].send_at > now:
            leases.setdefault((None, decisions[p.id].send_at), []).append(p)
    return [p for p in joined if decisions[p.id].send_at <= now]


def over_gas_cap(
    ctx: TonRailContext,
    p: Payment,
    decision: FeeDecision | None,
    caps: GasCaps,
    fees_seen: Mapping[str, int],
    attach_floor: int = 0,
) -> tuple[HoldReason, int, int] | None:
    """The gas cap that `p` would exceed, with the estimate and the cap; None: within caps.

    The fee estimate is the optimizer's expected fee for the batch, else the average fee of
    recent confirmed payouts of the asset; with neither (no history yet) only the attach is
    checked. The attach is what would go out with a jetton transfer (`attach_for`)."""
    expected = decision.expected_fee_nanoton if decision is not None else None
    fee = expected if expected is not None else fees_seen.get(p.asset)
    if p.asset == "TON":
        if fee is not None and fee > caps.ton_transfer_fee:
            return HoldReason.GAS_CAP_TON_TRANSFER_FEE, fee, caps.ton_transfer_fee
        return None
    attach = attach_for(ctx, decision, attach_floor)
    if attach > caps.jetton_transfer_attach:
        return HoldReason.GAS_CAP_JETTON_ATTACH, attach, caps.jetton_transfer_attach
    if fee is not None and fee > caps.jetton_transfer_fee:
        return HoldReason.GAS_CAP_JETTON_TRANSFER_FEE, fee, caps.jetton_transfer_fee
    return None


async def within_gas_caps(
    ctx: TonRailContext,
    session: AsyncSession,
    claimed: list[Payment],
    decisions: Mapping[str, FeeDecision],
    caps: GasCaps,
    fees_seen: Mapping[str, int],
    attach_floors: Mapping[str, int] | None = None,
) -> list[Payment]:
    """Keep the payouts whose estimated fee and attach are within the network's gas caps
    (TON_GAS_CAP_*); the others stay queued with the cap as `hold_reason` (the monitoring
    rule `gas_cap_exceeded` alerts on them) and go once the estimate is back under the cap."""
    kept: list[Payment] = []
    held: dict[tuple[Any, ...], list[Payment]] = {}
    for p in claimed:
        floor = (attach_floors or {}).get(p.id, 0)
        over = over_gas_cap(ctx, p, decisions.get(p.id), caps, fees_seen, floor)
        if over is None:
            kept.append(p)
            continue
        reason, estimate, cap = over
        if p.hold_reason != reason:
            log.warning("payout held by a gas cap", payment=p.id, reason=reason, estimate=estimate)
            emit(
                session,
                "payout.held",
                p.account_id,
                {
                    "id": p.id,
                    "reason": str(reason),
                    "asset": p.asset,
                    "estimate_nanoton": estimate,
                    "cap_nanoton": cap,
                },
                p.id,
            )
        held.setdefault((str(reason), None, None), []).append(p)
    if held:
        await set_columns(session, held, ("hold_reason", "locked_by", "locked_until"))
    return kept


async def fund(
    ctx: TonRailContext,
    session: AsyncSession,
    claimed: list[Payment],
    chain: dict[str, int],
    decisions: Mapping[str, FeeDecision],
    attach_floors: Mapping[str, int] | None = None,
) -> list[Payment]:
    """Keep the payouts the hot wallet can pay now; the others wait with a reason."""
    left = await in_flight_left(session, chain)
    funded: list[Payment] = []
    held: list[Payment] = []
    reason = HoldReason.INSUFFICIENT_HOT_WALLET_BALANCE
    for p in claimed:
        floor = (attach_floors or {}).get(p.id, 0)
        ton_need = p.amount if p.asset == "TON" else attach_for(ctx, decisions.get(p.id), floor)
        ton_need += FEE_RESERVE_NANOTON
        usdt_need = p.amount if p.asset == "USDT" else 0
        if left["TON"] >= ton_need and left["USDT"] >= usdt_need:
            left["TON"] -= ton_need
            left["USDT"] -= usdt_need
            funded.append(p)
            continue
        if p.hold_reason != reason:
            emit(
                session,
                "payout.held",
                p.account_id,
                {"id": p.id, "reason": str(reason), "asset": p.asset},
                p.id,
            )
        held.append(p)
    if held:
        await set_columns(
            session, {(str(reason), None, None): held}, ("hold_reason", "locked_by", "locked_until")
        )
    return funded


async def measured_fees(db: Database, history: timedelta = timedelta(hours=1)) -> dict[str, int]:
    """Average fee per confirmed payout by asset over `history` (assets with none: absent)."""
    since = clock.now() - history
    async with db.transaction() as session:
        rows = (
            await session.execute(
                select(TonTransfer.asset, func.avg(TonTransfer.fee))
                .where(
                    TonTransfer.status == TransferStatus.CONFIRMED, TonTransfer.updated_at >= since
                )
                .group_by(TonTransfer.asset)
            )
        ).all()
    return {asset: int(avg) for asset, avg in rows if avg is not None}
