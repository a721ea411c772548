"""Every status move of payments and attempts, applied to the database in one place.

`states.py` holds the rules (which move is legal); this module applies them: each move is
checked against those tables, written with compare-and-set (a row moves only if it is still
in the status it was read in, so concurrent movers cannot both win) and comes with what the
move implies in the same transaction: the outbox event of a payment's move, the books and
the daily volume of a payout that ends without moving money.

Moves of one row and moves of many share one path: one UPDATE per (from, to) pair, however
many rows move (a highload request carries up to 254 payouts).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import case, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from tonrail import clock
from tonrail.errors import Conflict
from tonrail.events.service import emit
from tonrail.ids import new_id
from tonrail.ledger import rules as books
from tonrail.ledger.service import post_many
from tonrail.limits.service import release_daily_volume, release_key_volume
from tonrail.payments.models import Attempt, Payment, Refund
from tonrail.payments.schemas import RefundOut
from tonrail.payments.states import (
    LIVE_ATTEMPT_STATES,
    RELEASING_PAYOUT_STATES,
    TERMINAL_PAYMENT_STATES,
    AttemptStatus,
    PaymentStatus,
    check_attempt_transition,
    check_payment_transition,
)
from tonrail.security.api_keys import KEY_IDENTITY
from tonrail.states import RefundStatus


# ------------------------------------------------------------------------- payments
# Keyword-only options after `*`: alike other signatures in shape only.
async def move_payment(
    session: AsyncSession,
    payment: Payment,
    target: PaymentStatus,
    *,
    actor: str,
    failure_code: str | None = None,
    failure_message: str | None = None,
    values: dict[str, Any] | None = None,
) -> None:
    """Move one payment to `target` (see `move_payments`), recording why it failed or was
    canceled when `failure_code` is given."""
    extra = dict(values or {})
    if failure_code is not None:
        extra.update(failure_code=failure_code, failure_message=failure_message)
    await move_payments(session, [payment], target, actor=actor, values=extra)


async def move_payments(
    session: AsyncSession,
    payments: Sequence[Payment],
    target: PaymentStatus,
    *,
    actor: str,
    values: dict[str, Any] | None = None,
) -> None:
    """Move payments to `target`: every move checked first (IllegalTransition, nothing
    written), then one compare-and-set UPDATE per current status setting `values` too
    (Conflict if a row moved meanwhile). A final status ends the worker lease; a payout
    that is canceled or fails gives its reserved amount and daily volume back. Each
    payment's move writes its outbox event (`payout.<status>` / `invoice.<status>`)."""
    if not payments:
        return
    target = PaymentStatus(target)  # a member on the loaded objects, whatever was passed
    groups: dict[str, list[Payment]] = {}
    for p in payments:
        check_payment_transition(p.direction, p.status, target)
        groups.setdefault(p.status, []).append(p)
    now = clock.now()
    common: dict[str, Any] = {"updated_at": now, **(values or {})}
    if target in TERMINAL_PAYMENT_STATES:
        common.update(completed_at=now, locked_by=None, locked_until=None)
    for current, group in groups.items():
        ids = [p.id for p in group]
        moved = set(
            (
                await session.execute(
                    update(Payment)
                    .where(Payment.id.in_(ids), Payment.status == current)
                    .values(status=target, **common)
                    .returning(Payment.id)
                    .execution_options(synchronize_session=False)
                )
            ).scalars()
        )
        if len(moved) != len(ids):
            stale = next(i for i in ids if i not in moved)
            raise Conflict(
                f"payment {stale} changed concurrently; reload and retry", code="concurrent_update"
            )
        for p in group:
            # Keep the loaded objects true without making the session write them again.
            set_committed_value(p, "status", target)
            for name, value in common.items():
                set_committed_value(p, name, value)
    released = [p for p in payments if p.direction == "out" and target in RELEASING_PAYOUT_STATES]
    if released:
        await post_many(
            session,
            [
                (f"payout.{target}", books.payout_released(p.account_id, p.asset, p.amount), p.id)
                for p in released
            ],
        )
        volume: dict[str, int] = {}
        for p in released:
            if p.volume_day is not None:
                volume[p.volume_day] = volume.get(p.volume_day, 0) + p.usdt_equivalent
        # A key's row before the day's, as payouts lock them (limits/service.py).
        by_key: dict[tuple[str, str], int] = {}
        for p in released:
            if p.volume_day is not None and p.requested_by.startswith(KEY_IDENTITY):
                at = (p.requested_by[len(KEY_IDENTITY) :], p.volume_day)
                by_key[at] = by_key.get(at, 0) + p.usdt_equivalent
        for (key_id, day), amount in sorted(by_key.items()):
            await release_key_volume(session, key_id, day, amount)
        for day, amount in volume.items():
            await release_daily_volume(session, day, amount)
    ended = [p.id for p in payments if p.direction == "out"]
    if ended and target in TERMINAL_PAYMENT_STATES:
        code = (values or {}).get("failure_code") or str(target)
        await _settle_refunds(session, ended, target == PaymentStatus.SUCCEEDED, code)
    for current, group in groups.items():
        for p in group:
            kind = "payout" if p.direction == "out" else "invoice"
            emit(
                session,
                f"{kind}.{target}",
                p.account_id,
                {"id": p.id, "from": current, "to": target, "actor": actor},
                p.id,
            )


async def _settle_refunds(
    session: AsyncSession, payout_ids: Sequence[str], succeeded: bool, failure_code: str
) -> None:
    """The refunds these payouts carry end with them: `refund.succeeded`, or `refund.failed`
    (the payout failed or was canceled, and its books gave the amount back to the merchant)."""
    refunds = (
        await session.execute(
            select(Refund).where(
                Refund.payout_id.in_(list(payout_ids)), Refund.status == RefundStatus.PENDING
            )
        )
    ).scalars()
    now = clock.now()
    for refund in refunds:
        refund.status = RefundStatus.SUCCEEDED if succeeded else RefundStatus.FAILED
        refund.failure_code = None if succeeded else failure_code
        refund.updated_at = now
        emit(
            session,
            f"refund.{refund.status}",
            refund.account_id,
            RefundOut.of(refund).model_dump(mode="json"),
            refund.invoice_id,
        )


# ------------------------------------------------------------------------- attempts
async def live_attempt(session: AsyncSession, payment_id: str) -> Attempt | None:
    """The payment's attempt that may still move money, if there is one (at most one)."""
    stmt = select(Attempt).where(
        Attempt.payment_id == payment_id, Attempt.status.in_(LIVE_ATTEMPT_STATES)
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def start_attempt(
    session: AsyncSession, payment: Payment, rail: str, details: dict[str, Any] | None = None
) -> Attempt:
    """Create attempt n+1 in `created`; refused while another attempt may still move money."""
    return (await start_attempts(session, [payment], rail, details=details))[payment.id]


async def start_attempts(
    session: AsyncSession,
    payments: Sequence[Payment],
    rail: str,
    *,
    details: dict[str, Any] | None = None,
    provider_ref: str | None = None,
) -> dict[str, Attempt]:
    """Attempt n+1 of each payment, in `created` (with the rail's reference when it is known
    already), by payment id. Refused (Conflict `attempt_live`), and nothing kept, if any of
    them still has a live attempt; the database's unique index refuses a concurrent one."""
    if not payments:
        return {}
    ids = [p.id for p in payments]
    rows = (
        await session.execute(
            select(
                Attempt.payment_id,
                func.max(Attempt.number),
                func.sum(case((Attempt.status.in_(LIVE_ATTEMPT_STATES), 1), else_=0)),
            )
            .where(Attempt.payment_id.in_(ids))
            .group_by(Attempt.payment_id)
        )
    ).all()
    numbers: dict[str, int] = {}
    for payment_id, number, live in rows:
        if live:
            raise _attempt_live(payment_id)
        numbers[payment_id] = int(number or 0)
    now = clock.now()
    out: dict[str, Attempt] = {}
    for p in payments:
        n = numbers.get(p.id, 0) + 1
        out[p.id] = Attempt(
            id=new_id("att"),
            payment_id=p.id,
            number=n,
            rail=rail,
            status=AttemptStatus.CREATED,
            idempotency_key=f"{p.id}:{n}",
            provider_ref=provider_ref,
            details=dict(details or {}),
            created_at=now,
            updated_at=now,
        )
    session.add_all(out.values())
    try:
        async with session.begin_nested():
            await session.flush()
    except IntegrityError:
        raise _attempt_live(ids[0] if len(ids) == 1 else None) from None
    return out


def _attempt_live(payment_id: str | None) -> Conflict:
    subject = f"payment {payment_id}" if payment_id else "a payment of the batch"
    return Conflict(f"{subject} has a live attempt; resolve it first", code="attempt_live")


@dataclass(frozen=True, slots=True)
class AttemptMove:
    """One attempt's move; `values` are its own columns (fee, error, details...)."""

    attempt: Attempt
    target: AttemptStatus
    values: dict[str, Any] = field(default_factory=dict)


async def move_attempt(
    session: AsyncSession, attempt: Attempt, target: AttemptStatus, **values: Any
) -> None:
    """Move one attempt to `target`, setting `values` with it (see `move_attempts`)."""
    await move_attempts(session, [AttemptMove(attempt, target, values)])


async def move_attempts(session: AsyncSession, moves: Iterable[AttemptMove]) -> None:
    """Move attempts: every move checked first (IllegalTransition, nothing written), then
    one compare-and-set UPDATE per (from, to) (Conflict if a row moved meanwhile). Values
    shared by a whole group go in that UPDATE; others follow, one executemany per set of
    columns."""
    groups: dict[tuple[str, AttemptStatus], list[AttemptMove]] = {}
    for m in moves:
        check_attempt_transition(m.attempt.status, m.target)
        groups.setdefault((m.attempt.status, AttemptStatus(m.target)), []).append(m)
    now = clock.now()
    for (current, target), group in groups.items():
        ids = [m.attempt.id for m in group]
        first = group[0].values
        shared = first if all(m.values == first for m in group) else {}
        moved = set(
            (
                await session.execute(
                    update(Attempt)
                    .where(Attempt.id.in_(ids), Attempt.status == current)
                    .values(status=target, updated_at=now, **shared)
                    .returning(Attempt.id)
                    .execution_options(synchronize_session=False)
                )
            ).scalars()
        )
        if len(moved) != len(ids):
            stale = next(i for i in ids if i not in moved)
            raise Conflict(f"attempt {stale} changed concurrently", code="concurrent_update")
        # The rows are ours now (row locks / the write lock): set each one's own values.
        by_columns: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        for m in group:
            if m.values and not shared:
                by_columns.setdefault(tuple(sorted(m.values)), []).append(
                    {"id": m.attempt.id, **m.values}
                )
            set_committed_value(m.attempt, "status", target)
            set_committed_value(m.attempt, "updated_at", now)
            for name, value in m.values.items():
                set_committed_value(m.attempt, name, value)
        for rows in by_columns.values():
            await session.execute(update(Attempt), rows)
