"""What the dashboard's Overview shows of the present, read on every request: the current
congestion, pending and stuck payments, the hot wallet (books and chain) and open alerts."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, and_, case, func, literal, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from tonrail.db import UTCDateTime
from tonrail.fees.models import FeeSample
from tonrail.ledger import rules as books
from tonrail.ledger.service import balance
from tonrail.monitoring.models import Alert, MonitoringSignal
from tonrail.monitoring.rules import Thresholds, bank_cutoff, row_is_stuck
from tonrail.monitoring.signals import parse_labels
from tonrail.monitoring.snapshot import PENDING_STATES, awaiting_signers
from tonrail.monitoring.states import ACTIVE_ALERT_STATES, AlertStatus
from tonrail.payments.models import Payment
from tonrail.payments.states import PaymentStatus
from tonrail.settings import Settings

HOT_WALLET_ASSETS = ("TON", "USDT")
TOP_STUCK = 5
# Routes on which a payment may be pending for long and normally (`monitoring.rules.is_stuck`)
WAITING_ROUTES = ("bank", "treasury")
TOP_ALERTS = 5
SEVERITY_RANK = {"critical": 0, "error": 1, "warning": 2, "info": 3}


@dataclass(frozen=True)
class CongestionNow:
    """The fee sampler's latest look at the network."""

    pct: float | None
    raw_pct: float | None
    latency_ms: int | None
    queue_size: int | None
    sampled_at: datetime | None
    gas_price: int | None  # nanoton per gas unit (config param 21), as last measured


@dataclass(frozen=True)
class StuckPayment:
    id: str
    direction: str
    status: str
    asset: str
    amount: int
    created_at: datetime
    age_seconds: int


@dataclass(frozen=True)
class Pending:
    pending: int  # queued + processing
    awaiting_approval: int
    awaiting_payment: int  # open invoices
    stuck: int
    oldest_stuck: list[StuckPayment]


@dataclass(frozen=True)
class HotWalletBalance:
    asset: str
    ledger: int
    on_chain: int | None  # as last measured by the payout loop (monitoring signal)
    measured_at: datetime | None

    @property
    def difference(self) -> int | None:
        return None if self.on_chain is None else self.on_chain - self.ledger


@dataclass(frozen=True)
class AlertLine:
    id: str
    rule: str
    severity: str
    status: str
    summary: str
    opened_at: datetime
    last_seen_at: datetime


@dataclass(frozen=True)
class Alerts:
    open: int
    acknowledged: int
    top: list[AlertLine]


async def congestion_now(session: AsyncSession) -> CongestionNow:
    """The fee sampler's latest look at the network, and the gas price last measured."""
    latest = (
        await session.execute(
            select(
                FeeSample.congestion_bp,
                FeeSample.congestion_raw_bp,
                FeeSample.latency_ms,
                FeeSample.queue_size,
                FeeSample.sampled_at,
            )
            .order_by(FeeSample.sampled_at.desc(), FeeSample.id.desc())
            .limit(1)
        )
    ).first()
    gas = await session.scalar(
        select(MonitoringSignal.value).where(
            MonitoringSignal.name == "gas_price", MonitoringSignal.labels == ""
        )
    )
    gas_price = int(gas) if gas is not None else None
    if latest is None:
        return CongestionNow(None, None, None, None, None, gas_price)
    bp, raw_bp, latency, queue, at = latest
    return CongestionNow(
        bp / 100 if bp is not None else None,
        raw_bp / 100 if raw_bp is not None else None,
        latency,
        queue,
        at,
        gas_price,
    )


def _pending_longer_than_target(now: datetime, dialect: str) -> ColumnElement[bool]:
    at = literal(now, UTCDateTime())
    if dialect == "sqlite":
        age = (func.julianday(at) - func.julianday(Payment.created_at)) * 86_400
    else:
        age = func.date_part("epoch", at - Payment.created_at)
    return age > Payment.target_confirmation_seconds


async def pending(
    session: AsyncSession, settings: Settings, now: datetime, dialect: str
) -> Pending:
    """Open payments now; stuck as the monitoring rule `payments_stuck` has it
    (`monitoring.rules.is_stuck`): pending longer than ALERT_STUCK_SECONDS and than its own
    target confirmation time, counted in SQL, but for a bank payout within its business days
    or a treasury payout whose order waits for its signers."""
    counts = dict(
        (
            await session.execute(
                select(Payment.status, func.count())
                .where(
                    Payment.status.in_(
                        (
                            *PENDING_STATES,
                            PaymentStatus.REQUIRES_APPROVAL,
                            PaymentStatus.AWAITING_PAYMENT,
                        )
                    )
                )
                .group_by(Payment.status)
            )
        ).all()
    )
    horizon = now - timedelta(seconds=settings.alert_stuck_seconds)
    late = and_(
        Payment.status.in_(PENDING_STATES),
        Payment.created_at < horizon,
        _pending_longer_than_target(now, dialect),
    )
    # A bank payout is stuck once its business days are over: sent before `bank_cutoff`,
    # counted in SQL with the rest. Treasury payouts (few and large) may be pending normally
    # while their order waits for its signers: `is_stuck` judges each, as the alert does.
    thresholds = Thresholds.from_settings(settings)
    cutoff = bank_cutoff(now, thresholds.bank_business_days)
    waits = Payment.route.in_(WAITING_ROUTES)
    bank_late = and_(Payment.route == "bank", Payment.created_at < cutoff)
    ordinary = and_(late, or_(Payment.route.is_(None), ~waits, bank_late))
    stuck = int(await session.scalar(select(func.count()).where(ordinary)) or 0)
    columns = (
        Payment.id,
        Payment.direction,
        Payment.status,
        Payment.asset,
        Payment.amount,
        Payment.created_at,
    )
    rows = list(
        await session.execute(
            select(*columns)
            .where(ordinary)
            .order_by(Payment.created_at, Payment.id)
            .limit(TOP_STUCK)
        )
    )
    special = list(
        await session.execute(
            select(*columns, Payment.route, Payment.target_confirmation_seconds).where(
                late, Payment.route == "treasury"
            )
        )
    )
    signing = await awaiting_signers(session, now, [r.id for r in special])
    judged = [r for r in special if row_is_stuck(r, now, thresholds, signing)]
    stuck += len(judged)
    oldest = sorted(
        (
            StuckPayment(
                r.id,
                r.direction,
                r.status,
                r.asset,
                r.amount,
                r.created_at,
                int((now - r.created_at).total_seconds()),
            )
            for r in [*rows, *judged]
        ),
        key=lambda p: (p.created_at, p.id),
    )[:TOP_STUCK]
    return Pending(
        pending=sum(int(counts.get(s, 0)) for s in PENDING_STATES),
        awaiting_approval=int(counts.get(PaymentStatus.REQUIRES_APPROVAL, 0)),
        awaiting_payment=int(counts.get(PaymentStatus.AWAITING_PAYMENT, 0)),
        stuck=stuck,
        oldest_stuck=oldest,
    )


async def hot_wallet(session: AsyncSession) -> list[HotWalletBalance]:
    """Per asset: the books (ledger) and the chain as the payout loop last measured it."""
    measured: dict[str, tuple[int, datetime]] = {}
    for labels, value, at in await session.execute(
        select(MonitoringSignal.labels, MonitoringSignal.value, MonitoringSignal.updated_at).where(
            MonitoringSignal.name == "hot_wallet_balance"
        )
    ):
        asset = parse_labels(labels).get("asset")
        if asset:
            measured[asset] = (int(value), at)
    out = []
    for asset in sorted({*HOT_WALLET_ASSETS, *measured}, key=_asset_order):
        chain = measured.get(asset)
        out.append(
            HotWalletBalance(
                asset,
                await balance(session, books.HOT_WALLET, asset),
                chain[0] if chain else None,
                chain[1] if chain else None,
            )
        )
    return out


def _asset_order(asset: str) -> tuple[int, str]:
    return (HOT_WALLET_ASSETS.index(asset) if asset in HOT_WALLET_ASSETS else 99, asset)


async def alerts(session: AsyncSession) -> Alerts:
    """Open and acknowledged alerts: counts and the most severe, newest first."""
    counts = dict(
        (
            await session.execute(
                select(Alert.status, func.count())
                .where(Alert.status.in_(ACTIVE_ALERT_STATES))
                .group_by(Alert.status)
            )
        ).all()
    )
    rank = case(SEVERITY_RANK, value=Alert.severity, else_=len(SEVERITY_RANK))
    rows = (
        (
            await session.execute(
                select(Alert)
                .where(Alert.status.in_(ACTIVE_ALERT_STATES))
                .order_by(
                    case((Alert.status == AlertStatus.OPEN, 0), else_=1),
                    rank,
                    Alert.last_seen_at.desc(),
                    Alert.id,
                )
                .limit(TOP_ALERTS)
            )
        )
        .scalars()
        .all()
    )
    return Alerts(
        int(counts.get(AlertStatus.OPEN, 0)),
        int(counts.get(AlertStatus.ACKNOWLEDGED, 0)),
        [
            AlertLine(a.id, a.rule, a.severity, a.status, a.summary, a.opened_at, a.last_seen_at)
            for a in rows
        ],
    )
