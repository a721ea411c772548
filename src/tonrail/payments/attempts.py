"""Payments and attempts as the rails see them: plain views (moves live in `transitions.py`)."""

from __future__ import annotations

from tonrail.payments.models import Attempt, Payment
from tonrail.rails.base import AttemptView, PaymentView


# A field-by-field copy into the view: alike other views in shape only.
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


# A field-by-field copy into the view: alike other views in shape only.
def attempt_view(a: Attempt) -> AttemptView:
    return AttemptView(
        id=a.id,
        payment_id=a.payment_id,
        number=a.number,
        idempotency_key=a.idempotency_key,
        provider_ref=a.provider_ref,
        details=dict(a.details or {}),
    )
