"""What a compliance report says, read from the database as sections of text rows.

CSV and PDF are both drawn from the same sections (render.py), so they cannot disagree.
Amounts are decimal strings in the named asset (format_minor), never floats.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import and_, func, literal, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute
from sqlalchemy.sql.elements import ColumnElement

from tonrail.money import format_minor
from tonrail.monitoring.models import Alert, MonitoringSignal
from tonrail.monitoring.signals import BOOKS_DIFFERENCE, parse_labels
from tonrail.payments.models import Approval, Attempt, Payment
from tonrail.payments.states import AttemptStatus, PaymentStatus
from tonrail.reports.periods import Period
from tonrail.security.models import Lockout, SecurityFailure
from tonrail.settings import Settings

ROW_LIMIT = 5_000  # per list; a longer list says so in its last row


@dataclass
class Section:
    name: str  # machine name, the first CSV column
    title: str
    columns: list[str]
    rows: list[list[str]] = field(default_factory=list)


@dataclass
class Report:
    title: str
    period: Period
    generated_at: datetime
    sections: list[Section]


def large_threshold(settings: Settings) -> int:
    """Micro-USDT from which a payment is listed as large (default: the approval threshold)."""
    return settings.report_large_transaction_usdt or settings.approval_threshold_usdt


def _at(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S") if moment else ""


def _in(column: InstrumentedAttribute[Any], period: Period) -> ColumnElement[bool]:
    return and_(column >= period.start, column < period.end)


async def volumes(session: AsyncSession, period: Period) -> Section:
    """Succeeded payments that finished in the period, by asset, rail and direction."""
    # A payment credited from a deposit has no attempt: it came on chain, the TON rail.
    rail = func.coalesce(Attempt.rail, literal("ton"))
    rows = await session.execute(
        select(Payment.asset, rail, Payment.direction, func.count(), func.sum(Payment.amount))
        .select_from(Payment)
        .outerjoin(
            Attempt,
            and_(Attempt.payment_id == Payment.id, Attempt.status == AttemptStatus.CONFIRMED),
        )
        .where(
            Payment.status == PaymentStatus.SUCCEEDED,
            _in(Payment.completed_at, period),
        )
        .group_by(Payment.asset, rail, Payment.direction)
        .order_by(Payment.asset, rail, Payment.direction)
    )
    return Section(
        "volumes",
        "Volumes (succeeded payments)",
        ["asset", "rail", "direction", "payments", "amount"],
        [[a, r, d, str(n), format_minor(int(total), a)] for a, r, d, n, total in rows],
    )


async def fees(session: AsyncSession, period: Period) -> Section:
    """Fees paid by attempts last updated in the period, by rail and fee asset."""
    rows = await session.execute(
        select(Attempt.rail, Attempt.fee_asset, func.count(), func.sum(Attempt.fee_amount))
        .where(Attempt.fee_amount.is_not(None), _in(Attempt.updated_at, period))
        .group_by(Attempt.rail, Attempt.fee_asset)
        .order_by(Attempt.rail, Attempt.fee_asset)
    )
    return Section(
        "fees",
        "Fees paid",
        ["rail", "fee_asset", "attempts", "amount"],
        [[r, str(a), str(n), format_minor(int(t or 0), str(a))] for r, a, n, t in rows],
    )


async def large_transactions(session: AsyncSession, period: Period, threshold: int) -> Section:
    """Payments (both directions) created in the period worth `threshold` micro-USDT or more."""
    payments = (
        await session.execute(
            select(Payment)
            .where(_in(Payment.created_at, period), Payment.usdt_equivalent >= threshold)
            .order_by(Payment.created_at, Payment.id)
            .limit(ROW_LIMIT + 1)
        )
    ).scalars()
    rows = [
        [
            p.id,
            _at(p.created_at),
            p.direction,
            p.asset,
            format_minor(p.amount, p.asset),
            format_minor(p.usdt_equivalent, "USDT"),
            str(p.status),
            p.requested_by,
            p.counterparty or "",
        ]
        for p in payments
    ]
    return Section(
        "large_transactions",
        f"Large transactions (from {format_minor(threshold, 'USDT')} USDT equivalent)",
        [
            "payment",
            "created",
            "direction",
            "asset",
            "amount",
            "usdt_equivalent",
            "status",
            "requested_by",
            "counterparty",
        ],
        _capped(rows, 9),
    )


async def approvals(session: AsyncSession, period: Period) -> Section:
    rows = await session.execute(
        select(Approval.payment_id, Approval.approver, Approval.created_at)
        .join(Payment, Payment.id == Approval.payment_id)
        .add_columns(Payment.asset, Payment.amount, Payment.status, Payment.requested_by)
        .where(_in(Approval.created_at, period))
        .order_by(Approval.created_at, Approval.id)
        .limit(ROW_LIMIT + 1)
    )
    out = [
        [pid, _at(at), approver, asset, format_minor(amount, asset), str(status), requester]
        for pid, approver, at, asset, amount, status, requester in rows
    ]
    return Section(
        "approvals",
        "Approvals",
        ["payment", "approved_at", "approver", "asset", "amount", "status", "requested_by"],
        _capped(out, 7),
    )


async def failures(session: AsyncSession, period: Period) -> Section:
    """Failed payments by direction and code, and refused actions (security_failures)."""
    failed = await session.execute(
        select(Payment.direction, Payment.failure_code, func.count())
        .where(
            Payment.status == PaymentStatus.FAILED,
            _in(Payment.completed_at, period),
        )
        .group_by(Payment.direction, Payment.failure_code)
        .order_by(Payment.direction, Payment.failure_code)
    )
    refused = await session.execute(
        select(SecurityFailure.subject_kind, SecurityFailure.code, func.count())
        .where(_in(SecurityFailure.at, period))
        .group_by(SecurityFailure.subject_kind, SecurityFailure.code)
        .order_by(SecurityFailure.subject_kind, SecurityFailure.code)
    )
    rows = [["payment_failed", d, code or "", str(n)] for d, code, n in failed]
    rows += [["security_failure", kind, code, str(n)] for kind, code, n in refused]
    return Section(
        "failures", "Failed and refused activity", ["kind", "subject", "code", "count"], rows
    )


async def lockouts(session: AsyncSession, period: Period) -> Section:
    locks = (
        await session.execute(
            select(Lockout)
            .where(_in(Lockout.locked_at, period))
            .order_by(Lockout.locked_at, Lockout.id)
            .limit(ROW_LIMIT + 1)
        )
    ).scalars()
    rows = [
        [
            lk.id,
            lk.subject_kind,
            lk.subject,
            str(lk.failures),
            _at(lk.locked_at),
            _at(lk.unlocked_at),
            lk.unlocked_by or "",
        ]
        for lk in locks
    ]
    return Section(
        "lockouts",
        "Lockouts",
        ["lockout", "kind", "subject", "failures", "locked_at", "unlocked_at", "unlocked_by"],
        _capped(rows, 7),
    )


async def alerts(session: AsyncSession, period: Period) -> Section:
    """Alerts opened in the period; resolution time in whole seconds when resolved."""
    found = (
        await session.execute(
            select(Alert)
            .where(_in(Alert.opened_at, period))
            .order_by(Alert.opened_at, Alert.id)
            .limit(ROW_LIMIT + 1)
        )
    ).scalars()
    rows = []
    for a in found:
        took = ""
        if a.resolved_at is not None:
            took = str(int((a.resolved_at - a.opened_at).total_seconds()))
        rows.append(
            [a.id, a.rule, a.severity, str(a.status), _at(a.opened_at), _at(a.resolved_at), took]
        )
    return Section(
        "alerts",
        "Alerts and their resolution",
        ["alert", "rule", "severity", "status", "opened_at", "resolved_at", "resolved_in_s"],
        _capped(rows, 7),
    )


async def reconciliation(session: AsyncSession, period: Period) -> Section:
    """The last books-vs-chain check per asset (books_difference signal) and how many
    books_mismatch alerts opened in the period."""
    signals = (
        await session.execute(
            select(MonitoringSignal)
            .where(MonitoringSignal.name == BOOKS_DIFFERENCE)
            .order_by(MonitoringSignal.labels)
        )
    ).scalars()
    rows = []
    for sig in signals:
        labels = parse_labels(sig.labels)
        asset = labels.get("asset", "")
        shown = f"{asset} (treasury)" if labels.get("wallet") == "treasury" else asset
        status = "match" if sig.value == 0 else "mismatch"
        rows.append([shown, status, format_minor(sig.value, asset), _at(sig.updated_at)])
    if not rows:
        rows.append(["", "no check recorded", "", ""])
    mismatches = (
        await session.execute(
            select(func.count()).where(
                Alert.rule == "books_mismatch",
                _in(Alert.opened_at, period),
            )
        )
    ).scalar_one()
    rows.append(["", f"books_mismatch alerts opened in period: {mismatches}", "", ""])
    return Section(
        "reconciliation",
        "Reconciliation (hot wallet books vs chain)",
        ["asset", "status", "chain_minus_books", "checked_at"],
        rows,
    )


def _capped(rows: list[list[str]], width: int) -> list[list[str]]:
    if len(rows) <= ROW_LIMIT:
        return rows
    return [*rows[:ROW_LIMIT], [f"... more than {ROW_LIMIT} rows", *[""] * (width - 1)]]


async def monthly(
    session: AsyncSession, settings: Settings, period: Period, now: datetime
) -> Report:
    """The monthly compliance report of `period`."""
    sections = [
        await volumes(session, period),
        await fees(session, period),
        await large_transactions(session, period, large_threshold(settings)),
        await approvals(session, period),
        await failures(session, period),
        await lockouts(session, period),
        await alerts(session, period),
        await reconciliation(session, period),
    ]
    return Report(f"tonrail compliance report {period.label}", period, now, sections)


async def weekly_large(
    session: AsyncSession, settings: Settings, period: Period, now: datetime
) -> Report:
    """The weekly "audit large transactions" list."""
    section = await large_transactions(session, period, large_threshold(settings))
    return Report(f"tonrail large transactions {period.label}", period, now, [section])
