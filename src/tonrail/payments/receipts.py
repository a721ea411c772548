"""What the chain shows of payments: the deposits that paid an invoice, the transaction that
sent a payout, and a treasury payout's multisig order. Read for a whole page of payments at
once (one statement each)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from tonrail.payments.models import Attempt, Payment, Refund
from tonrail.payments.states import AttemptStatus
from tonrail.rails.ton.models import TonDeposit, TonRequest, TonTransfer
from tonrail.rails.ton.states import CREDITING_DEPOSIT_STATES, TransferStatus
from tonrail.states import RefundStatus
from tonrail.treasury.models import TreasuryOrder


@dataclass(frozen=True, slots=True)
class ChainFacts:
    """An invoice's deposits (every one matched to it, oldest first) and what counts towards
    it; a payout's sending transaction (hex hash) once confirmed on TON."""

    deposits: list[TonDeposit] = field(default_factory=list)
    received: int = 0
    refunded: int = 0  # refunds pending or succeeded
    tx_hash: str | None = None
    treasury_order: TreasuryOrder | None = None  # a payout paid from the treasury multisig


async def chain_facts(session: AsyncSession, payments: Sequence[Payment]) -> dict[str, ChainFacts]:
    """The facts of each payment, by id. An invoice has received the credited, underpaid
    and overpaid deposits (late ones count for nothing), or its whole amount when a backup
    rail (Stripe, PayPal, bank) confirmed its payment."""
    invoices = [p for p in payments if p.direction == "in"]
    payouts = [p.id for p in payments if p.direction == "out"]
    out: dict[str, ChainFacts] = {}
    if invoices:
        ids = [p.id for p in invoices]
        deposits: dict[str, list[TonDeposit]] = {i: [] for i in ids}
        for d in (
            await session.execute(
                select(TonDeposit).where(TonDeposit.payment_id.in_(ids)).order_by(TonDeposit.lt)
            )
        ).scalars():
            deposits[d.payment_id or ""].append(d)
        by_backup = set(
            (
                await session.execute(
                    select(Attempt.payment_id).where(
                        Attempt.payment_id.in_(ids),
                        Attempt.rail != "ton",
                        Attempt.status == AttemptStatus.CONFIRMED,
                    )
                )
            ).scalars()
        )
        refunded = dict(
            (
                await session.execute(
                    select(Refund.invoice_id, func.sum(Refund.amount))
                    .where(Refund.invoice_id.in_(ids), Refund.status != RefundStatus.FAILED)
                    .group_by(Refund.invoice_id)
                )
            ).all()
        )
        for p in invoices:
            mine = deposits[p.id]
            received = sum(d.amount for d in mine if d.status in CREDITING_DEPOSIT_STATES)
            out[p.id] = ChainFacts(
                mine,
                received + (p.amount if p.id in by_backup else 0),
                int(refunded.get(p.id) or 0),
            )
    if payouts:
        treasury = [p.id for p in payments if p.direction == "out" and p.route == "treasury"]
        if treasury:
            for order in (
                await session.execute(
                    select(TreasuryOrder).where(TreasuryOrder.payment_id.in_(treasury))
                )
            ).scalars():
                out[order.payment_id or ""] = ChainFacts(treasury_order=order)
        rows = await session.execute(
            select(TonTransfer.payment_id, TonTransfer.trace, TonRequest.transfer_tx_hash)
            .join(TonRequest, TonRequest.id == TonTransfer.request_id)
            .where(
                TonTransfer.payment_id.in_(payouts),
                TonTransfer.status == TransferStatus.CONFIRMED,
            )
        )
        for payment_id, trace, request_tx in rows.all():
            out[payment_id] = replace(
                out.get(payment_id, ChainFacts()),
                tx_hash=(trace or {}).get("sent_tx") or request_tx,
            )
    return out
