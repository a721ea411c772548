"""SQL of the Operations page: switches, payouts held by the pause, stuck payments, lockouts,
and the audit log. Read-only; the actions are in dashboard/interventions.py."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from tonrail import clock
from tonrail.monitoring.rules import Thresholds, row_is_stuck
from tonrail.monitoring.snapshot import awaiting_signers
from tonrail.payments.models import Attempt, Payment
from tonrail.payments.states import PENDING_PAYMENT_STATES, PaymentStatus
from tonrail.security.audit_log import AuditEntry
from tonrail.security.lockouts import in_force
from tonrail.security.models import Lockout
from tonrail.security.switches import SWITCHES, OpsSwitch

PENDING = PENDING_PAYMENT_STATES
STUCK_LOOKED_AT = 500  # pending payments older than the stuck age examined, oldest first
HELD_SHOWN = 20
LOCKOUTS_SHOWN = 200


@dataclass(frozen=True)
class SwitchState:
    name: str
    enabled: bool
    reason: str | None
    changed_by: str | None
    changed_at: datetime | None


@dataclass(frozen=True)
class AttemptBrief:
    number: int
    rail: str
    status: str
    error_code: str | None
    error_message: str | None
    updated_at: datetime


@dataclass(frozen=True)
class PendingPayment:
    """A payment with what an operator needs to decide whether to retry or cancel it."""

    id: str
    direction: str
    status: str
    asset: str
    amount: int
    counterparty: str | None
    created_at: datetime
    updated_at: datetime
    target_confirmation_seconds: int
    hold_reason: str | None
    route: str | None
    locked_by: str | None
    locked_until: datetime | None
    attempts: list[AttemptBrief] = field(default_factory=list)

    @property
    def last_attempt(self) -> AttemptBrief | None:
        return self.attempts[-1] if self.attempts else None

    def age_seconds(self, now: datetime) -> int:
        return int((now - self.created_at).total_seconds())


@dataclass(frozen=True)
class Held:
    count: int
    oldest: list[PendingPayment]


async def switches(session: AsyncSession) -> list[SwitchState]:
    rows = {r.name: r for r in (await session.execute(select(OpsSwitch))).scalars()}
    states = []
    for name in SWITCHES:
        row = rows.get(name)
        states.append(
            SwitchState(
                name,
                bool(row and row.enabled),
                row.reason if row else None,
                row.changed_by if row else None,
                row.changed_at if row else None,
            )
        )
    return states


def _pending(p: Payment, attempts: list[AttemptBrief]) -> PendingPayment:
    # A field-by-field copy into the view: alike other views in shape only.
    return PendingPayment(
        id=p.id,
        direction=p.direction,
        status=p.status,
        asset=p.asset,
        amount=p.amount,
        counterparty=p.counterparty,
        created_at=p.created_at,
        updated_at=p.updated_at,
        target_confirmation_seconds=p.target_confirmation_seconds,
        hold_reason=p.hold_reason,
        route=p.route,
        locked_by=p.locked_by,
        locked_until=p.locked_until,
        attempts=attempts,
    )


async def attempts_of(
    session: AsyncSession, payment_ids: Sequence[str]
) -> dict[str, list[AttemptBrief]]:
    if not payment_ids:
        return {}
    rows = (
        await session.execute(
            select(Attempt)
            .where(Attempt.payment_id.in_(list(payment_ids)))
            .order_by(Attempt.payment_id, Attempt.number)
        )
    ).scalars()
    found: dict[str, list[AttemptBrief]] = {}
    for a in rows:
        found.setdefault(a.payment_id, []).append(
            AttemptBrief(a.number, a.rail, a.status, a.error_code, a.error_message, a.updated_at)
        )
    return found


async def payment(session: AsyncSession, payment_id: str) -> PendingPayment | None:
    """One payment (any status) with its attempts, for the lookup on the Operations page."""
    row = await session.get(Payment, payment_id)
    if row is None:
        return None
    return _pending(row, (await attempts_of(session, [row.id])).get(row.id, []))


async def stuck(
    session: AsyncSession, now: datetime, thresholds: Thresholds, limit: int
) -> tuple[list[PendingPayment], int]:
    """Pending payments the monitoring rule `payments_stuck` counts as stuck (`is_stuck`: past
    the stuck age and their own target, a bank payout past its business days, a treasury
    payout not while its order waits for its signers), oldest first; and how many there are
    among the oldest STUCK_LOOKED_AT pending ones."""
    horizon = now - timedelta(seconds=thresholds.stuck_seconds)
    rows = list(
        (
            await session.execute(
                select(Payment)
                .where(Payment.status.in_(PENDING), Payment.created_at < horizon)
                .order_by(Payment.created_at, Payment.id)
                .limit(STUCK_LOOKED_AT)
            )
        ).scalars()
    )
    signing = await awaiting_signers(session, now, [p.id for p in rows if p.route == "treasury"])
    late = [p for p in rows if row_is_stuck(p, now, thresholds, signing)]
    shown = late[:limit]
    attempts = await attempts_of(session, [p.id for p in shown])
    return [_pending(p, attempts.get(p.id, [])) for p in shown], len(late)


async def held_by_pause(session: AsyncSession) -> Held:
    """Payouts the pause keeps from being signed: queued, oldest first."""
    where = (Payment.direction == "out", Payment.status == PaymentStatus.QUEUED)
    count = await session.scalar(select(func.count()).select_from(Payment).where(*where))
    rows = list(
        (
            await session.execute(
                select(Payment)
                .where(*where)
                .order_by(Payment.created_at, Payment.id)
                .limit(HELD_SHOWN)
            )
        ).scalars()
    )
    attempts = await attempts_of(session, [p.id for p in rows])
    return Held(int(count or 0), [_pending(p, attempts.get(p.id, [])) for p in rows])


async def lockouts(session: AsyncSession) -> list[Lockout]:
    """Active lockouts, newest first."""
    return list(
        (
            await session.execute(
                select(Lockout)
                .where(in_force(clock.now()))
                .order_by(Lockout.locked_at.desc())
                .limit(LOCKOUTS_SHOWN)
            )
        ).scalars()
    )


@dataclass(frozen=True)
class AuditPage:
    entries: list[AuditEntry]
    older_than: int | None  # the seq to continue before, when older entries exist


async def audit_entries(
    session: AsyncSession, limit: int, before: int | None = None, action: str | None = None
) -> AuditPage:
    """The audit log newest first, keyset-paged on seq, optionally by action prefix."""
    stmt = select(AuditEntry)
    if before is not None:
        stmt = stmt.where(AuditEntry.seq < before)
    if action:
        stmt = stmt.where(AuditEntry.action.startswith(action, autoescape=True))
    rows = list(
        (await session.execute(stmt.order_by(AuditEntry.seq.desc()).limit(limit + 1))).scalars()
    )
    page = rows[:limit]
    return AuditPage(page, page[-1].seq if len(rows) > limit and page else None)
