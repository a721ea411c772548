"""November 2026 for the report tests: payments made through the public API and moved by the
services (tests/dashboard/test_overview.py's Seeder), approvals through the approval service,
lockouts, refused actions, alerts and reconciliation signals as their writers store them."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select

from tests.dashboard.test_overview import Seeder, clock_at
from tonrail.db import Database
from tonrail.monitoring.models import Alert, MonitoringSignal
from tonrail.payments.models import Payment
from tonrail.security.models import Lockout, SecurityFailure

NOW = datetime(2026, 12, 4, 10, 0, tzinfo=UTC)
LARGE_USDT = 6_000_000  # REPORT_LARGE_TRANSACTION_USDT of these tests: 6 USDT


def at(month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    return datetime(2026, month, day, hour, minute, second, tzinfo=UTC)


async def seed_november(s: Seeder, db: Database) -> dict[str, str]:
    ids: dict[str, str] = {}
    # Created in October, paid at 00:00:10 on 1 November: November's volume.
    ids["p0"] = await s.paid_payout("1", "TON", at(10, 31, 23, 59, 50), 20)
    ids["p1"] = await s.paid_payout("2", "TON", at(11, 3, 10), 10, (5_000_000, "TON"))
    ids["p2"] = await s.paid_payout("5", "USDT", at(11, 10, 12), 20, (40_000_000, "TON"))
    ids["p3"] = await s.invoice("7", "USDT", at(11, 12, 9))
    await s.attempt(ids["p3"], "stripe", "confirmed", at(11, 12, 9, 5), (30, "USD"))
    await s.move(ids["p3"], "succeeded", at=at(11, 12, 9, 5))
    ids["p4"] = await s.paid_payout("3", "USDT", at(11, 15, 8), 5, (3_000_000, "TON"), "failed")
    ids["p5"] = await s.payout("1500000", "USDT", at(11, 20, 14))  # needs two approvers
    for approver, hour in (("admin:alice", 15), ("admin:bob", 16)):
        with clock_at(at(11, 20, hour)):
            async with db.transaction() as session:
                await s.service.approve_in(session, None, ids["p5"], approver)
    # December: in no November figure.
    ids["p6"] = await s.paid_payout("4", "TON", at(12, 1, 9), 60, (7_000_000, "TON"))

    async with db.transaction() as session:
        for moment in (at(11, 5, 9, 58), at(11, 5, 9, 59), at(12, 2)):
            session.add(
                SecurityFailure(
                    subject_kind="ip",
                    subject="203.0.113.9",
                    code="authentication_failed",
                    at=moment,
                )
            )
        session.add(
            Lockout(
                id="lck_nov",
                subject_kind="ip",
                subject="203.0.113.9",
                reason="too many failures",
                failures=5,
                locked_at=at(11, 5, 10),
                unlocked_at=at(11, 5, 11),
                unlocked_by="admin:alice",
                expires_at=None,
            )
        )
        for aid, rule, severity, status, opened, resolved in (
            ("alr_fee", "fee_high", "warning", "resolved", at(11, 6, 10), at(11, 6, 10, 30)),
            ("alr_books", "books_mismatch", "critical", "open", at(11, 25), None),
            ("alr_oct", "success_rate", "critical", "resolved", at(10, 2), at(10, 2, 1)),
        ):
            session.add(
                Alert(
                    id=aid,
                    dedup_key=f"{rule}:all",
                    rule=rule,
                    severity=severity,
                    status=status,
                    summary=rule,
                    details={},
                    opened_at=opened,
                    last_seen_at=resolved or NOW,
                    resolved_at=resolved,
                )
            )
        for asset, diff in (("TON", 0), ("USDT", -5_000_000)):
            session.add(
                MonitoringSignal(
                    name="books_difference",
                    labels=f"asset={asset}",
                    kind="gauge",
                    value=diff,
                    updated_at=at(12, 4, 9, 59),
                )
            )
    return ids


async def payments_by_key(db: Database, ids: dict[str, str]) -> dict[str, Payment]:
    async with db.transaction() as session:
        rows = (
            await session.execute(select(Payment).where(Payment.id.in_(ids.values())))
        ).scalars()
        by_id = {p.id: p for p in rows}
    return {key: by_id[pid] for key, pid in ids.items()}


def expected_csv(p: dict[str, Payment]) -> str:
    """The November report as CSV, every line written out."""

    def large(key: str, created: str, amount: str, usdt: str, status: str) -> str:
        pay = p[key]
        return (
            f"large_transactions,{pay.id},{created},{pay.direction},{pay.asset},{amount},{usdt},"
            f"{status},{pay.requested_by},{pay.counterparty or ''}"
        )

    p5 = p["p5"]
    lines = [
        "report,tonrail compliance report 2026-11",
        "period_start,2026-11-01 00:00:00",
        "period_end,2026-12-01 00:00:00",
        "generated_at,2026-12-04 10:00:00",
        "section,asset,rail,direction,payments,amount",
        "volumes,TON,ton,out,2,3.000000000",
        "volumes,USDT,stripe,in,1,7.000000",
        "volumes,USDT,ton,out,1,5.000000",
        "section,rail,fee_asset,attempts,amount",
        "fees,stripe,USD,1,0.30",
        "fees,ton,TON,3,0.048000000",
        "section,payment,created,direction,asset,amount,usdt_equivalent,status,requested_by,"
        "counterparty",
        large("p1", "2026-11-03 10:00:00", "2.000000000", "10.000000", "succeeded"),
        large("p3", "2026-11-12 09:00:00", "7.000000", "7.000000", "succeeded"),
        large("p5", "2026-11-20 14:00:00", "1500000.000000", "1500000.000000", str(p5.status)),
        "section,payment,approved_at,approver,asset,amount,status,requested_by",
        f"approvals,{p5.id},2026-11-20 15:00:00,admin:alice,USDT,1500000.000000,{p5.status},"
        f"{p5.requested_by}",
        f"approvals,{p5.id},2026-11-20 16:00:00,admin:bob,USDT,1500000.000000,{p5.status},"
        f"{p5.requested_by}",
        "section,kind,subject,code,count",
        "failures,payment_failed,out,test_failure,1",
        "failures,security_failure,ip,authentication_failed,2",
        "section,lockout,kind,subject,failures,locked_at,unlocked_at,unlocked_by",
        "lockouts,lck_nov,ip,203.0.113.9,5,2026-11-05 10:00:00,2026-11-05 11:00:00,admin:alice",
        "section,alert,rule,severity,status,opened_at,resolved_at,resolved_in_s",
        "alerts,alr_fee,fee_high,warning,resolved,2026-11-06 10:00:00,2026-11-06 10:30:00,1800",
        "alerts,alr_books,books_mismatch,critical,open,2026-11-25 00:00:00,,",
        "section,asset,status,chain_minus_books,checked_at",
        "reconciliation,TON,match,0.000000000,2026-12-04 09:59:00",
        "reconciliation,USDT,mismatch,-5.000000,2026-12-04 09:59:00",
        "reconciliation,,books_mismatch alerts opened in period: 1,,",
    ]
    return "\n".join(lines) + "\n"
