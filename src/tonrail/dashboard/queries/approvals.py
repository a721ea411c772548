"""SQL of the Approvals page: payouts waiting for approvers, oldest first, with who approved."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from tonrail.errors import InvalidRequest
from tonrail.payments.models import Approval, Attempt, Payment
from tonrail.payments.states import AttemptStatus
from tonrail.rails.base import PAYER
from tonrail.rails.ton.models import TonDeposit
from tonrail.rails.ton.states import DepositStatus
from tonrail.screening.models import ScreeningDecision
from tonrail.screening.service import HELD_MARK, PAYMENT_CREDIT, REVIEW_HOLD, SCREENING_MARK
from tonrail.security import audit_log
from tonrail.security.audit_log import AuditEntry
from tonrail.treasury.models import OrderStatus, TreasuryOrder

WAITING = "requires_approval"
DECISION_ACTIONS = (
    "payout.approve",
    "payout.reject",
    "deposit.release",
    "deposit.freeze",
    "payment.release",
    "payment.freeze",
)


@dataclass(frozen=True)
class ApprovalMark:
    approver: str
    at: datetime


@dataclass(frozen=True)
class WaitingPayout:
    id: str
    account_id: str
    created_at: datetime
    asset: str
    amount: int
    usdt_equivalent: int
    counterparty: str | None
    priority: str
    requested_by: str
    description: str | None
    metadata: dict[str, Any]
    approvals: list[ApprovalMark] = field(default_factory=list)
    hold_reason: str | None = None  # e.g. screening_review: held by AML/KYC screening


@dataclass(frozen=True)
class WaitingPage:
    rows: list[WaitingPayout]
    total: int
    next_after: str | None  # the id to continue after, when more are waiting


async def waiting(
    session: AsyncSession, limit: int, after: str | None = None, account_id: str | None = None
) -> WaitingPage:
    """Payouts in `requires_approval`, oldest first, keyset-paged on (created_at, id)."""
    where = [Payment.direction == "out", Payment.status == WAITING]
    if account_id:
        where.append(Payment.account_id == account_id)
    stmt = select(Payment).where(*where)
    if after:
        cursor = (
            await session.execute(select(Payment.created_at, Payment.id).where(Payment.id == after))
        ).first()
        if cursor is None:
            raise InvalidRequest(
                f"after {after!r} is not a payment", param="after", code="cursor_invalid"
            )
        stmt = stmt.where(
            or_(
                Payment.created_at > cursor.created_at,
                and_(Payment.created_at == cursor.created_at, Payment.id > cursor.id),
            )
        )
    stmt = stmt.order_by(Payment.created_at, Payment.id).limit(limit + 1)
    found = list((await session.execute(stmt)).scalars())
    page, more = found[:limit], len(found) > limit
    marks = await approvals_of(session, [p.id for p in page])
    total = await session.scalar(select(func.count()).select_from(Payment).where(*where))
    rows = [
        # A field-by-field copy into the view: alike other views in shape only.
        WaitingPayout(
            id=p.id,
            account_id=p.account_id,
            created_at=p.created_at,
            asset=p.asset,
            amount=p.amount,
            usdt_equivalent=p.usdt_equivalent,
            counterparty=p.counterparty,
            priority=p.priority,
            requested_by=p.requested_by,
            description=p.description,
            metadata=dict(p.metadata_ or {}),
            approvals=marks.get(p.id, []),
            hold_reason=p.hold_reason,
        )
        for p in page
    ]
    return WaitingPage(rows, int(total or 0), page[-1].id if more and page else None)


async def held_deposits(session: AsyncSession, limit: int = 100) -> list[TonDeposit]:
    """Deposits AML/KYC screening held for review (processing/deposits.py), oldest first:
    an approver releases or freezes each."""
    rows = await session.execute(
        select(TonDeposit)
        .where(TonDeposit.status == DepositStatus.HELD)
        .order_by(TonDeposit.created_at, TonDeposit.id)
        .limit(limit)
    )
    return list(rows.scalars())


@dataclass(frozen=True)
class HeldPayment:
    """A card, PayPal or bank payment of an invoice AML/KYC screening held for review."""

    id: str  # the attempt's
    payment_id: str
    rail: str
    created_at: datetime
    asset: str
    amount: int
    payer: dict[str, str]
    reason: str


async def held_payments(session: AsyncSession, limit: int = 100) -> list[HeldPayment]:
    """Backup-rail payments screening held (processing/payer_screening.py), oldest first:
    the confirmed attempts of invoices held for review whose mark is still `held`."""
    rows = await session.execute(
        select(Attempt)
        .join(Payment, Payment.id == Attempt.payment_id)
        .where(
            Payment.direction == "in",
            Payment.hold_reason == REVIEW_HOLD,
            Attempt.rail != "ton",
            Attempt.status == AttemptStatus.CONFIRMED,
        )
        .order_by(Attempt.created_at, Attempt.id)
        .limit(limit)
    )
    out: list[HeldPayment] = []
    for a in rows.scalars():
        details = a.details or {}
        if details.get(SCREENING_MARK) != HELD_MARK:
            continue
        decision = (
            await session.execute(
                select(ScreeningDecision.reason)
                .where(
                    ScreeningDecision.payment_id == a.payment_id,
                    ScreeningDecision.stage == PAYMENT_CREDIT,
                )
                .order_by(ScreeningDecision.decided_at.desc(), ScreeningDecision.id.desc())
                .limit(1)
            )
        ).scalar_one_or_none()
        out.append(
            HeldPayment(
                id=a.id,
                payment_id=a.payment_id,
                rail=a.rail,
                created_at=a.created_at,
                asset=str(details.get("rail_asset", "")),
                amount=int(details.get("rail_amount", 0)),
                payer=dict(details.get(PAYER) or {}),
                reason=decision or "",
            )
        )
    return out


async def approvals_of(
    session: AsyncSession, payment_ids: list[str]
) -> dict[str, list[ApprovalMark]]:
    if not payment_ids:
        return {}
    rows = await session.execute(
        select(Approval.payment_id, Approval.approver, Approval.created_at)
        .where(Approval.payment_id.in_(payment_ids))
        .order_by(Approval.id)
    )
    marks: dict[str, list[ApprovalMark]] = {}
    for payment_id, approver, at in rows:
        marks.setdefault(payment_id, []).append(ApprovalMark(approver, at))
    return marks


async def recent_decisions(session: AsyncSession, limit: int = 20) -> list[AuditEntry]:
    """The latest approvals and rejections made on the dashboard (from the audit log)."""
    entries: list[AuditEntry] = []
    for action in DECISION_ACTIONS:
        entries += await audit_log.recent(session, limit, action)
    return sorted(entries, key=lambda e: e.seq, reverse=True)[:limit]


# Treasury orders still open, then the latest finished ones: what the signers act on.
OPEN_ORDERS = (OrderStatus.SIGNED, OrderStatus.PROPOSED, OrderStatus.EXECUTED)


async def treasury_orders(session: AsyncSession, limit: int = 20) -> list[TreasuryOrder]:
    """The treasury's multisig orders (payouts and top-ups): open ones first, oldest first;
    then the most recent others."""
    open_rows = (
        await session.execute(
            select(TreasuryOrder)
            .where(TreasuryOrder.status.in_(OPEN_ORDERS))
            .order_by(TreasuryOrder.created_at, TreasuryOrder.id)
            .limit(limit)
        )
    ).scalars()
    done = (
        await session.execute(
            select(TreasuryOrder)
            .where(TreasuryOrder.status.not_in(OPEN_ORDERS))
            .order_by(TreasuryOrder.updated_at.desc(), TreasuryOrder.id)
            .limit(limit)
        )
    ).scalars()
    return [*open_rows, *done]
