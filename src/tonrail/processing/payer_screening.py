"""AML/KYC screening of invoices paid on a backup rail: card (Stripe), PayPal, bank transfer.

Who paid is what the provider tells us (rails put it in the poll's details under `payer`):
a card's billing name and e-mail, a Checkout Session's customer details, the PayPal payer's
name and e-mail, a bank statement line's debtor name and IBAN. It is screened with the same
providers and outcomes as TON deposits (processing/deposits.py), by the caller before the
transaction that credits the invoice (backup loop, webhooks, statement import: a provider may
answer slowly; `record_poll` asks nobody), and the decision is stored with what it decided
(stage `payment_credit`).

- `clear`: credited as before (`invoice.paid_by_provider`).
- `review`: the money is booked to liability:screening_held, not to the merchant; the attempt
  is marked `screening: held` and an open invoice waits in `processing` (hold_reason
  `screening_review`) until an approver releases or freezes it (`decide_held_payment`: the
  Approvals page, `tonrail deposits release|freeze <attempt id>`). With a TON deposit of it
  held too, it stays there until both are decided (deposits.settle_review): then it fails
  if either was frozen, else succeeds.
- `blocked`: booked to liability:screening_frozen, the attempt marked `screening: frozen`, the
  open invoice fails with `screening_blocked` and the alert `screening_blocked` opens.
The provider's fee is expensed in every case: the provider kept it.
"""

from __future__ import annotations

from typing import Any, Literal

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from tonrail.errors import Conflict, InvalidRequest, NotFound
from tonrail.events.service import emit
from tonrail.ledger import rules as books
from tonrail.ledger.service import post
from tonrail.money import format_minor
from tonrail.monitoring.signals import SCREENING_BLOCKED, write_signal
from tonrail.payments.models import Attempt, Payment
from tonrail.payments.service import PaymentService
from tonrail.payments.states import AttemptStatus, PaymentStatus
from tonrail.payments.transitions import move_payment
from tonrail.processing.deposits import held_for_review, settle_review
from tonrail.rails.base import PAYER
from tonrail.screening.rules import Outcome, Subject, Verdict
from tonrail.screening.service import (
    FROZEN_MARK,
    HELD_MARK,
    PAYMENT_CREDIT,
    RELEASED_MARK,
    REVIEW_HOLD,
    SCREENING_MARK,
    store_decision,
)
from tonrail.security import audit_log

log = structlog.get_logger(__name__)

Screened = tuple[Subject, Verdict]
HeldPaymentDecision = Literal["release", "freeze"]


def payer_subject(details: dict[str, Any]) -> Subject:
    """Whom screening looks at: the payer a rail reported (any of name, e-mail, IBAN)."""
    payer = details.get(PAYER) or {}
    return Subject(None, payer.get("name"), payer.get("email"), payer.get("iban"))


async def screen_payer(
    payments: PaymentService,
    direction: str,
    asset: str,
    amount: int,
    rail: str,
    details: dict[str, Any],
) -> Screened | None:
    """Screen the payer of an invoice a backup rail reports paid (outside any transaction);
    None when screening is off or the payment is not an invoice."""
    if payments.screening is None or direction != "in":
        return None
    subject = payer_subject(details)
    context = {
        "direction": "in",
        "asset": asset,
        "amount": format_minor(amount, asset),
        "purpose": "invoice_payment",
        "rail": rail,
    }
    return subject, await payments.screening.decide(subject, context)


async def set_apart(
    session: AsyncSession,
    payment: Payment,
    attempt: Attempt,
    screened: Screened,
    *,
    rail_asset: str,
    rail_amount: int,
    fee: int,
    source: str,
) -> str:
    """A confirmed payment whose payer screening held (`review`) or refused (`blocked`):
    booked apart from the merchant, in the caller's transaction. Returns the poll outcome."""
    verdict = screened[1]
    frozen = verdict.outcome == Outcome.BLOCKED
    account = books.SCREENING_FROZEN if frozen else books.SCREENING_HELD
    lines = [
        books.Line(source, rail_asset, rail_amount),
        books.Line(account, rail_asset, -rail_amount),
    ]
    if fee:
        lines += [
            books.Line(books.PROVIDER_FEES, rail_asset, fee),
            books.Line(books.PROVIDER_CLEARING, rail_asset, -fee),
        ]
    mark = FROZEN_MARK if frozen else HELD_MARK
    await post(session, f"invoice.screening_{mark}", lines, payment.id)
    attempt.details = {**attempt.details, SCREENING_MARK: mark}
    why = f": {verdict.reason}" if verdict.reason else ""
    if frozen:
        await write_signal(session, SCREENING_BLOCKED, 1, kind="counter")
        log.warning(
            "backup-rail payment frozen by screening", payment_id=payment.id, rail=attempt.rail
        )
        await _fail(session, payment, attempt, f"its payer is refused by AML/KYC screening{why}")
        return "screening_frozen"
    if payment.status == PaymentStatus.AWAITING_PAYMENT:
        await move_payment(
            session,
            payment,
            PaymentStatus.PROCESSING,
            actor=f"rail:{attempt.rail}",
            values={"hold_reason": REVIEW_HOLD},
        )
    log.info("backup-rail payment held by screening", payment_id=payment.id, rail=attempt.rail)
    return "screening_held"


async def _fail(session: AsyncSession, payment: Payment, attempt: Attempt, why: str) -> None:
    """The invoice fails with `screening_blocked` if it was still open: do not deliver. One
    held for review with another payment still held (a TON deposit) waits for that decision
    too (deposits.settle_review)."""
    message = f"the {attempt.rail} payment {attempt.id} is frozen, not credited: " + why
    if held_for_review(payment):
        await settle_review(session, payment, "system:screening", message)
    elif payment.status == PaymentStatus.AWAITING_PAYMENT:
        await move_payment(
            session,
            payment,
            PaymentStatus.FAILED,
            actor="system:screening",
            failure_code="screening_blocked",
            failure_message=message,
            values={"hold_reason": None},
        )


def is_held(attempt: Attempt) -> bool:
    return (
        attempt.status == AttemptStatus.CONFIRMED
        and (attempt.details or {}).get(SCREENING_MARK) == HELD_MARK
    )


async def decide_held_payment(
    session: AsyncSession,
    attempt_id: str,
    decision: HeldPaymentDecision,
    actor: str,
    note: str | None = None,
) -> Attempt:
    """An approver's decision on a backup-rail payment screening held for review, once (the
    attempt row is locked and must still be held). `release` credits the merchant (its
    invoice succeeds; an invoice no longer open gets the money as an unapplied receipt, as a
    late payment would); `freeze` books it frozen and fails the open invoice. Stored as a
    screening decision (provider `approver`), audited, with an operators' event."""
    if decision not in ("release", "freeze"):
        raise InvalidRequest("decision must be release or freeze", param="decision")
    attempt = await session.get(Attempt, attempt_id, with_for_update=True)
    if attempt is None:
        raise NotFound(f"no payment attempt {attempt_id!r}", param="attempt")
    if not is_held(attempt):
        state = (attempt.details or {}).get(SCREENING_MARK) or attempt.status
        raise Conflict(
            f"attempt {attempt_id} is {state}, not held for review", code="payment_not_held"
        )
    invoice = await session.get(Payment, attempt.payment_id, with_for_update=True)
    assert invoice is not None
    rail_asset = str(attempt.details["rail_asset"])
    rail_amount = int(attempt.details["rail_amount"])
    if decision == "release":
        if held_for_review(invoice) or invoice.status == PaymentStatus.AWAITING_PAYMENT:
            lines = books.payment_received_by_provider(
                invoice.account_id,
                invoice.asset,
                invoice.amount,
                rail_asset,
                rail_amount,
                0,
                books.SCREENING_HELD,
            )
        else:
            lines = [
                books.Line(books.SCREENING_HELD, rail_asset, rail_amount),
                books.Line(books.UNAPPLIED_RECEIPTS, rail_asset, -rail_amount),
            ]
        await post(session, "invoice.screening_released", lines, invoice.id)
        attempt.details = {**attempt.details, SCREENING_MARK: RELEASED_MARK}
        await session.flush()
        if held_for_review(invoice):
            await settle_review(session, invoice, actor)
        elif invoice.status == PaymentStatus.AWAITING_PAYMENT:
            await move_payment(session, invoice, PaymentStatus.SUCCEEDED, actor=actor)
    else:
        await post(
            session,
            "invoice.screening_frozen",
            [
                books.Line(books.SCREENING_HELD, rail_asset, rail_amount),
                books.Line(books.SCREENING_FROZEN, rail_asset, -rail_amount),
            ],
            invoice.id,
        )
        attempt.details = {**attempt.details, SCREENING_MARK: FROZEN_MARK}
        await session.flush()
        await write_signal(session, SCREENING_BLOCKED, 1, kind="counter")
        await _fail(session, invoice, attempt, f"frozen by {actor}" + (f": {note}" if note else ""))
    done = "released" if decision == "release" else "frozen"
    verdict = Verdict(
        Outcome.CLEAR if decision == "release" else Outcome.BLOCKED, "approver", note or ""
    )
    await store_decision(
        session,
        verdict,
        stage=PAYMENT_CREDIT,
        subject=payer_subject(attempt.details),
        payment_id=invoice.id,
        requested_by=actor,
    )
    details = {
        "invoice": invoice.id,
        "rail": attempt.rail,
        "asset": rail_asset,
        "amount": rail_amount,
        "note": note,
    }
    # For operators: a compliance note is not the merchant's to read.
    emit(
        session,
        f"payment.screening_{done}",
        "system",
        {"id": attempt.id, "actor": actor, **details, "status": str(invoice.status)},
        invoice.id,
    )
    await audit_log.record(session, actor, f"payment.{decision}", attempt.id, details)
    return attempt
