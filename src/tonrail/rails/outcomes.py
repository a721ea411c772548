"""Recording what a backup rail reports: attempt moves, payment status and ledger postings.

Used by the webhook processor, the bank statement import, checkout, and the processing
loop; every function runs inside the caller's transaction and is safe to repeat.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from tonrail.errors import Conflict
from tonrail.ledger import rules as books
from tonrail.ledger.service import post
from tonrail.payments.attempts import move_attempt
from tonrail.payments.models import Attempt, Payment
from tonrail.payments.service import PaymentService
from tonrail.payments.states import TERMINAL_PAYMENT_STATES
from tonrail.rails.base import PollResult, SubmitResult


async def record_submit(session: AsyncSession, attempt: Attempt, result: SubmitResult) -> None:
    """`created -> submitted` (then `unknown` if we cannot tell) or `created -> failed`."""
    details = {**attempt.details, **result.details}
    if result.status == "failed":
        await move_attempt(
            session,
            attempt,
            "failed",
            details=details,
            error_code=result.error_code,
            error_message=result.error_message,
        )
        return
    await move_attempt(
        session, attempt, "submitted", provider_ref=result.provider_ref, details=details
    )
    if result.status == "unknown":
        await move_attempt(
            session,
            attempt,
            "unknown",
            error_code=result.error_code,
            error_message=result.error_message,
        )


async def attempt_by_ref(session: AsyncSession, rail: str, provider_ref: str) -> Attempt | None:
    stmt = select(Attempt).where(Attempt.rail == rail, Attempt.provider_ref == provider_ref)
    return (await session.execute(stmt)).scalars().first()


async def record_poll(
    session: AsyncSession,
    payments: PaymentService,
    attempt: Attempt,
    result: PollResult,
    extra_details: dict[str, Any] | None = None,
) -> str:
    """Apply a rail's view of an attempt; returns what happened (for logs and reports).

    A confirmed attempt settles its payment in the same transaction: the attempt becomes
    `confirmed` with its fee, the payment `succeeded`, and the ledger gets balanced lines.
    Already-resolved attempts are left alone, so duplicates and late events are harmless.
    """
    if attempt.status not in ("submitted", "unknown"):
        return f"attempt_already_{attempt.status}"
    details = {**attempt.details, **result.details, **(extra_details or {})}
    if result.status == "pending":
        if details != attempt.details:
            attempt.details = details
            await session.flush()
        return "pending"
    if result.status in ("failed", "expired"):
        await move_attempt(
            session,
            attempt,
            result.status,
            details=details,
            error_code=result.error_code,
            error_message=result.error_message,
        )
        return result.status
    payment = await session.get(Payment, attempt.payment_id, with_for_update=True)
    assert payment is not None
    fee = result.fee or 0
    fee_asset = result.fee_asset or str(details["rail_asset"])
    await move_attempt(
        session, attempt, "confirmed", details=details, fee_amount=fee, fee_asset=fee_asset
    )
    rail_asset = str(details["rail_asset"])
    rail_amount = int(details["rail_amount"])
    actor = f"rail:{attempt.rail}"
    if payment.direction == "out":
        if payment.status != "processing":
            raise Conflict(
                f"payout {payment.id} is {payment.status}, but attempt {attempt.id} confirmed",
                code="attempt_confirmed_unexpectedly",
            )
        await post(
            session,
            "payout.settled_by_provider",
            books.payout_settled_by_provider(
                payment.asset, payment.amount, rail_asset, rail_amount, fee
            ),
            payment.id,
        )
        await payments.transition(session, payment, "succeeded", actor=actor)
        return "succeeded"
    source = str(details.get("received_into", books.PROVIDER_CLEARING))
    if payment.status in TERMINAL_PAYMENT_STATES:
        # Paid again (or after expiry): keep the money visible for a refund, never credit twice.
        lines = [
            books.Line(source, rail_asset, rail_amount),
            books.Line(books.UNAPPLIED_RECEIPTS, rail_asset, -rail_amount),
        ]
        if source != books.UNAPPLIED_RECEIPTS:
            await post(session, "invoice.unapplied_receipt", lines, payment.id)
        return "unapplied_receipt"
    await post(
        session,
        "invoice.paid_by_provider",
        books.payment_received_by_provider(
            payment.account_id, payment.asset, payment.amount, rail_asset, rail_amount, fee, source
        ),
        payment.id,
    )
    await payments.transition(session, payment, "succeeded", actor=actor)
    return "succeeded"
