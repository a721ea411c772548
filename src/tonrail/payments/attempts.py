"""Attempts as the rails see them (plain views); their moves live in `transitions.py`."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from tonrail.payments import transitions
from tonrail.payments.models import Attempt, Payment
from tonrail.payments.states import AttemptStatus
from tonrail.payments.transitions import live_attempt, start_attempt
from tonrail.rails.base import AttemptView, PaymentView

__all__ = ["attempt_view", "live_attempt", "move_attempt", "payment_view", "start_attempt"]


async def move_attempt(session: AsyncSession, attempt: Attempt, target: str, **values: Any) -> None:
    """`transitions.move_attempt` for callers that still name the status as text."""
    await transitions.move_attempt(session, attempt, AttemptStatus(target), **values)


def payment_view(p: Payment) -> PaymentView:
    return PaymentView(
        id=p.id,
        account_id=p.account_id,
        direction="out" if p.direction == "out" else "in",
        amount=p.amount,
        asset=p.asset,
        counterparty=p.counterparty,
        priority=p.priority,
        target_confirmation_seconds=p.target_confirmation_seconds,
        reference=p.reference,
        metadata=dict(p.metadata_ or {}),
    )


def attempt_view(a: Attempt) -> AttemptView:
    return AttemptView(
        id=a.id,
        payment_id=a.payment_id,
        number=a.number,
        idempotency_key=a.idempotency_key,
        provider_ref=a.provider_ref,
        details=dict(a.details or {}),
    )
