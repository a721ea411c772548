"""Operator decisions on deposits that credited no invoice in full (as BTCPay lets one do).

- `owner_funding`: an unmatched or late receipt was the owner topping up the hot wallet.
- `refund`: an underpaid deposit, or the excess of an overpaid one, goes back to its sender
  at once: a refund of the invoice (payments/refunds.py, the operation behind
  `POST /v1/invoices/{id}/refunds`), paid by a payout. An unmatched or late receipt, which
  credited no merchant, is booked as owed back (`liability:refunds_payable`) and marked.
- `apply`: an unmatched receipt pays an open invoice after all (e.g. a mistyped comment).
- `accept`: an underpaid invoice is accepted as paid with what arrived.
Each decision posts its ledger lines and an outbox event in one transaction.
"""

from __future__ import annotations

from typing import Literal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from tonrail.errors import Conflict, InvalidRequest, NotFound
from tonrail.events.service import emit
from tonrail.ledger import rules as books
from tonrail.ledger.service import post
from tonrail.money import format_minor
from tonrail.monitoring.signals import SCREENING_BLOCKED, write_signal
from tonrail.payments.models import Payment
from tonrail.payments.refunds import RefundService, Screened, refunded_by_destination
from tonrail.payments.schemas import RefundCreate
from tonrail.payments.service import PaymentService
from tonrail.payments.states import PaymentStatus
from tonrail.payments.transitions import move_payment
from tonrail.processing.deposits import fail_for_screening, settle_review
from tonrail.rails.ton.models import TonDeposit
from tonrail.rails.ton.states import (
    CREDITING_DEPOSIT_STATES,
    OFF_AMOUNT_DEPOSIT_STATES,
    UNAPPLIED_DEPOSIT_STATES,
    DepositStatus,
)
from tonrail.screening.rules import Outcome, Subject, Verdict
from tonrail.screening.service import DEPOSIT_CREDIT, REFUND_REQUEST, store_decision
from tonrail.security import audit_log
from tonrail.security.api_keys import Principal

Decision = Literal["owner_funding", "refund", "apply", "accept"]
OWNER_FUNDING = "equity:owner_funding"
REFUNDS_PAYABLE = "liability:refunds_payable"
UNAPPLIED = UNAPPLIED_DEPOSIT_STATES
# Decisions that move an unapplied receipt to another account: (ledger reason, account).
RECLASSIFIED: dict[str, tuple[str, str]] = {
    "owner_funding": ("deposit.owner_funding", OWNER_FUNDING),
    "refund": ("deposit.refund_owed", REFUNDS_PAYABLE),
}


# Keyword-only options after `*`: alike other signatures in shape only.
async def resolve(
    session: AsyncSession,
    payments: PaymentService,
    deposit_id: str,
    decision: Decision,
    actor: str,
    *,
    invoice_id: str | None = None,
    note: str | None = None,
    screened: Screened | None = None,
) -> TonDeposit:
    """Record the operator's decision on one deposit; refuses decisions that do not fit.
    A refund of an off-amount deposit is a payout: with screening on, its payee must have
    been screened first (`screen_refund`, before this transaction)."""
    deposit = await session.get(TonDeposit, deposit_id, with_for_update=True)
    if deposit is None:
        raise NotFound(f"no deposit {deposit_id!r}", param="deposit")
    if deposit.status == DepositStatus.RESOLVED:
        raise Conflict(f"deposit {deposit_id} is already resolved", code="already_resolved")
    asset, amount = deposit.asset, deposit.amount
    if decision == "refund" and deposit.status in OFF_AMOUNT_DEPOSIT_STATES:
        await _refund_to_sender(session, payments, deposit, actor, note, screened)
        return deposit
    if decision in ("owner_funding", "refund", "apply") and deposit.status not in UNAPPLIED:
        raise Conflict(
            f"a {deposit.status} deposit cannot be resolved as {decision}",
            code="resolution_not_allowed",
        )
    if decision in RECLASSIFIED:
        reason, account = RECLASSIFIED[decision]
        await post(
            session,
            reason,
            [
                books.Line(books.UNAPPLIED_RECEIPTS, asset, amount),
                books.Line(account, asset, -amount),
            ],
        )
    elif decision == "apply":
        invoice = await _open_invoice(session, invoice_id, asset)
        await post(
            session,
            "deposit.applied",
            [
                books.Line(books.UNAPPLIED_RECEIPTS, asset, amount),
                books.Line(books.merchant_account(invoice.account_id), asset, -amount),
            ],
            invoice.id,
        )
        deposit.payment_id = invoice.id
        received = await _received(session, invoice.id) + amount
        if received >= invoice.amount:
            await move_payment(session, invoice, PaymentStatus.SUCCEEDED, actor=actor)
    elif decision == "accept":
        if deposit.status != DepositStatus.UNDERPAID or deposit.payment_id is None:
            raise Conflict(
                "only an underpaid deposit can be accepted", code="resolution_not_allowed"
            )
        underpaid = await session.get(Payment, deposit.payment_id)
        if underpaid is not None and underpaid.status == PaymentStatus.AWAITING_PAYMENT:
            await move_payment(session, underpaid, PaymentStatus.SUCCEEDED, actor=actor)
    else:
        raise InvalidRequest(f"unknown decision {decision!r}", param="decision")
    # An applied deposit now counts towards its invoice like any credited one.
    deposit.status = DepositStatus.CREDITED if decision == "apply" else DepositStatus.RESOLVED
    deposit.resolution = f"{decision} by {actor}" + (f": {note}" if note else "")
    emit(
        session,
        "deposit.resolved",
        "system",
        {"id": deposit.id, "decision": decision, "actor": actor, "note": note},
        deposit.payment_id,
    )
    return deposit


async def _refund_to_sender(
    session: AsyncSession,
    payments: PaymentService,
    deposit: TonDeposit,
    actor: str,
    note: str | None,
    screened: Screened | None,
) -> None:
    """Pay back an underpaid deposit in full, or the excess of an overpaid one, as a refund
    of its invoice. The deposit keeps its status (it did pay the invoice; the refund is what
    went back) and notes the refund."""
    invoice = await session.get(Payment, deposit.payment_id or "")
    if invoice is None:
        raise NotFound(f"deposit {deposit.id} names no invoice", param="deposit")
    if deposit.status == DepositStatus.UNDERPAID and invoice.status == PaymentStatus.SUCCEEDED:
        raise Conflict(
            "this deposit is part of what paid the invoice; refund the invoice instead",
            code="resolution_not_allowed",
        )
    amount = deposit.amount
    if deposit.status == DepositStatus.OVERPAID:
        refunded = sum((await refunded_by_destination(session, invoice.id)).values())
        excess = await _received(session, invoice.id) - invoice.amount - refunded
        amount = min(amount, excess)
        if amount <= 0:
            raise Conflict("no excess is left to refund", code="nothing_to_refund")
    merchant = Principal(key_id=actor, account_id=invoice.account_id, scopes=frozenset())
    refund, payout = await RefundService(payments).create_in(
        session,
        merchant,
        invoice.id,
        RefundCreate(
            amount=format_minor(amount, deposit.asset),
            reason=note or f"{deposit.status} deposit {deposit.id}",
            deposit=deposit.id,
        ),
        requested_by=actor,
        screened=screened,
    )
    await payments.reserve_volumes(session, merchant, [payout])
    deposit.resolution = f"refund {refund.id} by {actor}" + (f": {note}" if note else "")
    emit(
        session,
        "deposit.resolved",
        "system",
        {"id": deposit.id, "decision": "refund", "actor": actor, "note": note, "refund": refund.id},
        deposit.payment_id,
    )


HeldDecision = Literal["release", "freeze"]


async def decide_held(
    session: AsyncSession,
    deposit_id: str,
    decision: HeldDecision,
    actor: str,
    note: str | None = None,
) -> TonDeposit:
    """An approver's decision on a deposit AML/KYC screening held for review (the
    Approvals page, `tonrail deposits release|freeze`), once: the deposit row is locked and
    must still be `held`. `release` credits the merchant (its invoice succeeds if that
    covers it, else awaits payment again); `freeze` books it as frozen and fails its open
    invoice, as a blocked sender would. An invoice with another payment still held stays
    in `screening_review` until that one is decided too (deposits.settle_review). Stored
    as a screening decision (provider `approver`), audited, with a
    `deposit.screening_<decision>` event."""
    if decision not in ("release", "freeze"):
        raise InvalidRequest("decision must be release or freeze", param="decision")
    deposit = await session.get(TonDeposit, deposit_id, with_for_update=True)
    if deposit is None:
        raise NotFound(f"no deposit {deposit_id!r}", param="deposit")
    if deposit.status != DepositStatus.HELD:
        raise Conflict(
            f"deposit {deposit_id} is {deposit.status}, not held for review",
            code="deposit_not_held",
        )
    invoice = await session.get(Payment, deposit.payment_id or "", with_for_update=True)
    if invoice is None:
        raise NotFound(f"deposit {deposit.id} names no invoice", param="deposit")
    asset, amount = deposit.asset, deposit.amount
    if decision == "release":
        await post(
            session,
            "deposit.screening_released",
            [
                books.Line(books.SCREENING_HELD, asset, amount),
                books.Line(books.merchant_account(invoice.account_id), asset, -amount),
            ],
            invoice.id,
        )
        total = await _received(session, invoice.id) + amount
        deposit.status = (
            DepositStatus.UNDERPAID
            if total < invoice.amount
            else DepositStatus.CREDITED
            if total == invoice.amount
            else DepositStatus.OVERPAID
        )
        await session.flush()
        await settle_review(session, invoice, actor)
    else:
        await post(
            session,
            "deposit.screening_frozen",
            [
                books.Line(books.SCREENING_HELD, asset, amount),
                books.Line(books.SCREENING_FROZEN, asset, -amount),
            ],
            invoice.id,
        )
        deposit.status = DepositStatus.FROZEN
        await session.flush()
        await write_signal(session, SCREENING_BLOCKED, 1, kind="counter")
        await fail_for_screening(session, invoice, deposit.id)
    done = "released" if decision == "release" else "frozen"
    deposit.resolution = f"{done} by {actor}" + (f": {note}" if note else "")
    verdict = Verdict(
        Outcome.CLEAR if decision == "release" else Outcome.BLOCKED, "approver", note or ""
    )
    await store_decision(
        session,
        verdict,
        stage=DEPOSIT_CREDIT,
        subject=Subject(deposit.sender),
        payment_id=invoice.id,
        requested_by=actor,
        deposit_id=deposit.id,
    )
    details = {"invoice": invoice.id, "asset": asset, "amount": amount, "note": note}
    # For operators, as deposit.resolved: a compliance note is not the merchant's to read.
    emit(
        session,
        f"deposit.screening_{done}",
        "system",
        {"id": deposit.id, "actor": actor, **details, "status": str(deposit.status)},
        invoice.id,
    )
    await audit_log.record(session, actor, f"deposit.{decision}", deposit.id, details)
    return deposit


async def screen_refund(
    payments: PaymentService, deposit_id: str, decision: str, actor: str
) -> Screened | None:
    """Before `resolve` pays an off-amount deposit back (decision `refund`): AML/KYC
    screening of its sender, outside the transaction (a provider may answer slowly).
    `blocked` is stored and raised (screening_blocked); None when nothing is to screen."""
    if payments.screening is None or decision != "refund":
        return None
    async with payments.db.transaction() as session:
        deposit = await session.get(TonDeposit, deposit_id)
        if deposit is None or deposit.status not in OFF_AMOUNT_DEPOSIT_STATES:
            return None  # resolve refuses it, or books it without a payout
        subject, asset, amount = Subject(deposit.sender), deposit.asset, deposit.amount
    context = {
        "direction": "out",
        "asset": asset,
        "amount": format_minor(amount, asset),
        "purpose": "refund",
    }
    verdict = await payments.screen(actor, subject, context, REFUND_REQUEST, "deposit")
    assert verdict is not None
    return subject, verdict


async def _open_invoice(session: AsyncSession, invoice_id: str | None, asset: str) -> Payment:
    if not invoice_id:
        raise InvalidRequest("apply needs the invoice to apply the deposit to", param="invoice")
    invoice = await session.get(Payment, invoice_id)
    if invoice is None or invoice.direction != "in":
        raise NotFound(f"no invoice {invoice_id!r}", param="invoice")
    if invoice.status != PaymentStatus.AWAITING_PAYMENT:
        raise Conflict(f"invoice {invoice_id} is {invoice.status}", code="invoice_not_open")
    if invoice.asset != asset:
        raise Conflict(
            f"a {asset} deposit cannot pay a {invoice.asset} invoice", code="asset_mismatch"
        )
    return invoice


async def _received(session: AsyncSession, invoice_id: str) -> int:
    rows = await session.execute(
        select(TonDeposit.amount).where(
            TonDeposit.payment_id == invoice_id,
            TonDeposit.status.in_(CREDITING_DEPOSIT_STATES),
        )
    )
    return sum(int(a) for a in rows.scalars())


async def book_opening_balance(
    session: AsyncSession, asset: str, amount: int, actor: str, note: str
) -> None:
    """Book funds the hot wallet held before tonrail watched it (no deposit shows them)."""
    if amount <= 0:
        raise InvalidRequest("an opening balance must be positive", param="amount")
    await post(
        session,
        "hot_wallet.opening_balance",
        [books.Line(books.HOT_WALLET, asset, amount), books.Line(OWNER_FUNDING, asset, -amount)],
    )
    emit(
        session,
        "hot_wallet.opening_balance",
        "system",
        {"asset": asset, "amount": amount, "actor": actor, "note": note},
    )
