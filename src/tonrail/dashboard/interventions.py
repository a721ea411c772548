"""What an operator may do to payments from the dashboard, and the rules of when it is safe.

Every action runs in the caller's transaction and appends to the audit log in that same
transaction: the change and its record commit together or not at all. Payment moves go
through `payments/transitions.py` (the state machine in payments/states.py and its
compare-and-set), so the dashboard applies exactly the rules the API does.

A retry never risks paying twice: it is only offered for a queued payout whose last attempt
has a final outcome proving nothing left the wallet (failed or expired) and which waits on
the retry backoff; then "retry" ends the backoff so the next worker round takes it. A live
attempt (created, submitted, unknown) may still pay, so a payout that has one can be neither
retried nor canceled: its outcome comes from the chain or the provider.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import CursorResult, update
from sqlalchemy.ext.asyncio import AsyncSession

from tonrail import clock
from tonrail.dashboard.queries.operations import AttemptBrief, PendingPayment
from tonrail.dashboard.queries.operations import payment as load_payment
from tonrail.errors import Conflict, InvalidRequest, NotFound
from tonrail.payments.models import Payment
from tonrail.payments.service import PaymentService
from tonrail.payments.states import (
    FAILED_ATTEMPT_STATES,
    LIVE_ATTEMPT_STATES,
    TERMINAL_PAYMENT_STATES,
    AttemptStatus,
    PaymentStatus,
)
from tonrail.payments.transitions import move_payment
from tonrail.security import audit_log, lockouts
from tonrail.security.switches import SWITCHES, OpsSwitch, set_switch

REASON_MAX = 500
PROVEN_NOT_SENT = FAILED_ATTEMPT_STATES  # attempt outcomes: nothing is in flight


@dataclass(frozen=True)
class Verdict:
    """Whether an action is allowed on a payment now, and why (shown next to the button)."""

    allowed: bool
    code: str
    message: str


def _live(attempts: list[AttemptBrief]) -> AttemptBrief | None:
    return next((a for a in attempts if a.status in LIVE_ATTEMPT_STATES), None)


def retry_verdict(p: PendingPayment, now: datetime, paused: bool) -> Verdict:
    """Whether `p` may be retried now (pure: decided from the payment and its attempts)."""
    if p.direction != "out":
        return Verdict(
            False, "retry_not_applicable", "an invoice waits for the customer: nothing to retry"
        )
    if p.status in TERMINAL_PAYMENT_STATES:
        if p.status == PaymentStatus.FAILED:
            message = (
                "the payout failed for good: its reservation and daily volume were released; "
                "create a new payout to pay again"
            )
        elif p.status == PaymentStatus.SUCCEEDED:
            message = "the payout succeeded: retrying it would pay twice"
        else:
            message = f"the payout is {p.status}: nothing to retry"
        return Verdict(False, "payment_final", message)
    if p.status == PaymentStatus.REQUIRES_APPROVAL:
        return Verdict(
            False, "awaiting_approval", "the payout waits for its approvers (Approvals page)"
        )
    live = _live(p.attempts)
    if live is not None or p.status == PaymentStatus.PROCESSING:
        if live is not None and live.status == AttemptStatus.UNKNOWN:
            return Verdict(
                False,
                "attempt_outcome_unknown",
                f"attempt {live.number} on {live.rail} could not be proven unsent: retrying "
                "could pay twice. The tracker keeps reading the chain and re-queues the payout "
                "once it proves the request was never executed; check the wallet on an explorer",
            )
        what = f"attempt {live.number} on {live.rail} is {live.status}" if live else "it is sent"
        return Verdict(
            False,
            "attempt_in_flight",
            f"{what} and may still pay: wait for its outcome",
        )
    if paused:
        return Verdict(
            False, "payments_paused", "payments are paused: resume them, then it goes out"
        )
    last = p.attempts[-1] if p.attempts else None
    if last is None:
        return Verdict(
            False,
            "not_tried_yet",
            "it has not been tried yet: it goes out when the fee optimizer's window closes"
            + (f" (held: {p.hold_reason})" if p.hold_reason else ""),
        )
    if last.status not in PROVEN_NOT_SENT:
        return Verdict(False, "attempt_in_flight", f"attempt {last.number} is {last.status}")
    if p.locked_by is not None:
        return Verdict(
            False, "worker_busy", "a worker is handling it right now: look again in a moment"
        )
    if p.locked_until is None or p.locked_until <= now:
        return Verdict(
            False, "already_due", "it is already due: a worker takes it on its next round"
        )
    return Verdict(
        True,
        "retry_allowed",
        f"attempt {last.number} {last.status} ({last.error_code or 'no code'}) and sent "
        "nothing; the next try waits for its backoff: retry now",
    )


def cancel_verdict(p: PendingPayment) -> Verdict:
    """Whether `p` may be canceled: only before any money can move (the state machine's rule)."""
    if p.status in TERMINAL_PAYMENT_STATES:
        return Verdict(
            False, "payment_final", f"the payment is {p.status} already: there is nothing to cancel"
        )
    live = _live(p.attempts)
    if p.status == PaymentStatus.PROCESSING or live is not None:
        what = f"attempt {live.number} on {live.rail} ({live.status})" if live else "an attempt"
        return Verdict(
            False,
            "payment_in_flight",
            f"{what} may still pay: a payment in flight cannot be canceled; wait for its outcome",
        )
    return Verdict(True, "cancel_allowed", "nothing has been sent: it can be canceled")


def clean_reason(reason: str | None, *, required: bool) -> str | None:
    text = (reason or "").strip()
    if not text:
        if required:
            raise InvalidRequest(
                "give a reason (it goes in the audit log)", param="reason", code="reason_required"
            )
        return None
    if len(text) > REASON_MAX:
        raise InvalidRequest(
            f"the reason is longer than {REASON_MAX} characters",
            param="reason",
            code="reason_too_long",
        )
    return text


async def _payment_for_update(session: AsyncSession, payment_id: str) -> Payment:
    # Locked (PostgreSQL) so a worker claiming it now waits for us, or we for it.
    payment = await session.get(Payment, payment_id, with_for_update=True)
    if payment is None:
        raise NotFound(f"no payment {payment_id!r}", param="id", code="payment_not_found")
    return payment


async def _pending_view(session: AsyncSession, payment_id: str) -> PendingPayment:
    view = await load_payment(session, payment_id)
    assert view is not None
    return view


def _refuse(verdict: Verdict) -> Conflict:
    return Conflict(verdict.message, code=verdict.code)


# ------------------------------------------------------------------ approvals
async def approve(
    session: AsyncSession, payments: PaymentService, actor: str, payment_id: str
) -> tuple[str, int]:
    """Record `actor`'s approval with the service's own rules; returns (status, approvals)."""
    body: dict[str, Any] = await payments.approve_in(session, None, payment_id, actor)
    approvals = list(body.get("approvals") or [])
    await audit_log.record(
        session,
        actor,
        "payout.approve",
        payment_id,
        {
            "status": body["status"],
            "approvals": len(approvals),
            "required": payments.policy.approvals_required,
            "amount": body.get("amount"),
            "asset": body.get("asset"),
        },
    )
    return str(body["status"]), len(approvals)


async def reject(session: AsyncSession, actor: str, payment_id: str, reason: str) -> None:
    """Cancel a payout waiting for approval, with the approver's reason."""
    payment = await _payment_for_update(session, payment_id)
    if payment.direction != "out":
        raise NotFound(f"no payout {payment_id!r}", param="id", code="payment_not_found")
    if payment.status != PaymentStatus.REQUIRES_APPROVAL:
        raise Conflict(
            f"the payout is {payment.status}, not waiting for approval: it cannot be rejected",
            code="not_awaiting_approval",
        )
    await move_payment(
        session,
        payment,
        PaymentStatus.CANCELED,
        actor=actor,
        failure_code="rejected_by_approver",
        failure_message=reason,
    )
    await audit_log.record(
        session,
        actor,
        "payout.reject",
        payment_id,
        {"reason": reason, "amount": payment.amount, "asset": payment.asset},
    )


# ------------------------------------------------------------------ payments
async def cancel(session: AsyncSession, actor: str, payment_id: str, reason: str) -> str:
    """Cancel a payment before any money can move; returns the status it had."""
    payment = await _payment_for_update(session, payment_id)
    verdict = cancel_verdict(await _pending_view(session, payment_id))
    if not verdict.allowed:
        raise _refuse(verdict)
    previous = payment.status
    await move_payment(
        session,
        payment,
        PaymentStatus.CANCELED,
        actor=actor,
        failure_code="canceled_by_operator",
        failure_message=reason,
    )
    await audit_log.record(
        session,
        actor,
        "payment.cancel",
        payment_id,
        {"reason": reason, "from": previous, "amount": payment.amount, "asset": payment.asset},
    )
    return previous


async def retry(
    session: AsyncSession, actor: str, payment_id: str, paused: bool, reason: str | None
) -> Verdict:
    """End the backoff of a payout whose last attempt is proven not to have paid."""
    await _payment_for_update(session, payment_id)
    view = await _pending_view(session, payment_id)
    verdict = retry_verdict(view, clock.now(), paused)
    if not verdict.allowed:
        raise _refuse(verdict)
    # Compare-and-set on what was judged: a worker that took it meanwhile wins.
    result = await session.execute(
        update(Payment)
        .where(
            Payment.id == payment_id,
            Payment.status == PaymentStatus.QUEUED,
            Payment.locked_by.is_(None),
            Payment.locked_until == view.locked_until,
        )
        .values(locked_until=None, updated_at=clock.now())
        .execution_options(synchronize_session=False)
    )
    assert isinstance(result, CursorResult)
    if result.rowcount != 1:
        raise Conflict(f"payment {payment_id} changed meanwhile: reload", code="concurrent_update")
    last = view.last_attempt
    await audit_log.record(
        session,
        actor,
        "payment.retry",
        payment_id,
        {
            "reason": reason,
            "last_attempt": last.number if last else None,
            "last_status": last.status if last else None,
            "last_error": last.error_code if last else None,
            "backoff_until": view.locked_until,
        },
    )
    return verdict


# ------------------------------------------------------------------ switches and lockouts
async def flip_switch(
    session: AsyncSession, actor: str, name: str, enabled: bool, reason: str | None
) -> None:
    """Turn an operator switch on or off; refuses a flip that changes nothing."""
    if name not in SWITCHES:
        raise NotFound(
            f"unknown switch {name!r}; known: {', '.join(SWITCHES)}",
            param="name",
            code="switch_unknown",
        )
    row = await session.get(OpsSwitch, name, with_for_update=True)
    if bool(row and row.enabled) == enabled:
        by = f" (by {row.changed_by})" if row is not None else ""
        raise Conflict(
            f"{name} is already {'on' if enabled else 'off'}{by}: nothing changed",
            code="switch_unchanged",
        )
    await set_switch(session, name, enabled, actor, reason)
    await audit_log.record(
        session, actor, f"ops.{name}.{'on' if enabled else 'off'}", name, {"reason": reason}
    )


async def unlock(session: AsyncSession, actor: str, lockout_id: str, reason: str | None) -> str:
    """Lift one active lockout; returns what was unlocked (`kind:subject`)."""
    if not lockout_id.startswith("lock_"):
        raise NotFound(f"no active lockout {lockout_id!r}", code="lockout_not_found")
    rows = await lockouts.unlock(session, lockout_id, actor)
    subjects = [f"{r.subject_kind}:{r.subject}" for r in rows]
    await audit_log.record(
        session, actor, "lockout.unlock", lockout_id, {"subjects": subjects, "reason": reason}
    )
    return ", ".join(subjects)
