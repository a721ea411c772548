"""Attempts: one try of a payment on one rail; at most one live per payment."""

from __future__ import annotations

from typing import Any

from sqlalchemy import CursorResult, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from tonrail import clock
from tonrail.errors import Conflict
from tonrail.ids import new_id
from tonrail.payments.models import Attempt, Payment
from tonrail.payments.states import LIVE_ATTEMPT_STATES, check_attempt_transition
from tonrail.rails.base import AttemptView, PaymentView


async def live_attempt(session: AsyncSession, payment_id: str) -> Attempt | None:
    stmt = select(Attempt).where(
        Attempt.payment_id == payment_id, Attempt.status.in_(LIVE_ATTEMPT_STATES)
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def start_attempt(
    session: AsyncSession, payment: Payment, rail: str, details: dict[str, Any] | None = None
) -> Attempt:
    """Create attempt n+1 in `created`; refused while another attempt may still move money."""
    if await live_attempt(session, payment.id) is not None:
        raise Conflict(
            f"payment {payment.id} has a live attempt; resolve it first", code="attempt_live"
        )
    number = (
        int(
            (
                await session.execute(
                    select(func.coalesce(func.max(Attempt.number), 0)).where(
                        Attempt.payment_id == payment.id
                    )
                )
            ).scalar_one()
        )
        + 1
    )
    now = clock.now()
    attempt = Attempt(
        id=new_id("att"),
        payment_id=payment.id,
        number=number,
        rail=rail,
        status="created",
        idempotency_key=f"{payment.id}:{number}",
        details=details or {},
        created_at=now,
        updated_at=now,
    )
    session.add(attempt)
    try:
        async with session.begin_nested():
            await session.flush()
    except IntegrityError:
        raise Conflict(
            f"payment {payment.id} has a live attempt; resolve it first", code="attempt_live"
        ) from None
    return attempt


async def move_attempt(session: AsyncSession, attempt: Attempt, target: str, **values: Any) -> None:
    """Check and apply `attempt.status -> target` with compare-and-set."""
    check_attempt_transition(attempt.status, target)
    values["updated_at"] = clock.now()
    result = await session.execute(
        update(Attempt)
        .where(Attempt.id == attempt.id, Attempt.status == attempt.status)
        .values(status=target, **values)
        .execution_options(synchronize_session=False)
    )
    assert isinstance(result, CursorResult)
    if result.rowcount != 1:
        raise Conflict(f"attempt {attempt.id} changed concurrently", code="concurrent_update")
    attempt.status = target
    for name, value in values.items():
        setattr(attempt, name, value)


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
