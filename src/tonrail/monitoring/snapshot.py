"""The metrics snapshot: what the database says right now, as plain data.

`/metrics`, CloudWatch and the alert rules all read one `Snapshot`; the rules are pure
functions of it (see rules.py). Reads are bounded: counts are aggregated in SQL, and the few
lists (stuck payments, fees of a window) are capped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, and_, case, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from tonrail.events.models import OutboxEvent
from tonrail.kit.models import WorkerHeartbeat
from tonrail.monitoring.models import AlertDelivery, MonitoringSignal
from tonrail.monitoring.signals import parse_labels
from tonrail.monitoring.slo import BURN_WINDOWS
from tonrail.monitoring.states import DeliveryStatus
from tonrail.monitoring.suspicious import subject_failures
from tonrail.notify.models import WebhookEndpoint
from tonrail.notify.states import DisabledReason, EndpointStatus
from tonrail.payments.models import Attempt, Payment
from tonrail.payments.states import (
    FAILED_ATTEMPT_STATES,
    FINAL_ATTEMPT_STATES,
    PENDING_PAYMENT_STATES,
    AttemptStatus,
    PaymentStatus,
)
from tonrail.security.lockouts import in_force
from tonrail.security.models import Lockout
from tonrail.settings import Settings
from tonrail.states import ALERTED_HOLDS
from tonrail.treasury.models import OrderPurpose, OrderStatus, TreasuryOrder

PENDING_STATES = PENDING_PAYMENT_STATES
LIST_CAP = 1000
# A channel whose delivery failed this often and is still retrying counts as failing.
RETRYING_ATTEMPTS = 3
GAS_HOLD_IDS = 20  # payout ids an alert on a gas cap names


@dataclass(frozen=True)
class PendingPayment:
    id: str
    age_seconds: float
    target_seconds: int
    idle_seconds: float  # since the payment or its latest attempt last changed
    route: str | None = None  # the rail it was routed to (`bank` takes business days)
    # A treasury payout whose multisig order is on chain waiting for its signers, before the
    # order's expiration: humans decide, nothing is stuck (the order fails when it expires)
    awaiting_signers: bool = False


@dataclass(frozen=True)
class SignalValue:
    name: str
    labels: dict[str, str]
    kind: str
    value: int
    updated_at: datetime


@dataclass
class Snapshot:
    """Everything the metrics and rules need, read at `at`."""

    at: datetime
    window_seconds: int
    # (direction, status, asset, rail) -> (count, sum of amounts in minor units)
    payments: dict[tuple[str, str, str, str], tuple[int, int]] = field(default_factory=dict)
    # payments finished inside the window: status -> count (succeeded / failed)
    finished: dict[str, int] = field(default_factory=dict)
    # payments finished in each burn-rate window (slo.BURN_WINDOWS): seconds -> (ok, failed)
    finished_windows: dict[int, tuple[int, int]] = field(default_factory=dict)
    # attempts finished inside the window: (rail, status) -> count
    attempts_finished: dict[tuple[str, str], int] = field(default_factory=dict)
    # failed attempts inside the window: (rail, error_code) -> count
    failures_by_code: dict[tuple[str, str], int] = field(default_factory=dict)
    pending_count: int = 0
    oldest_pending_age: float = 0.0
    pending_old: list[PendingPayment] = field(default_factory=list)  # older than the stuck age
    # succeeded volume inside the window in micro-USDT equivalent
    window_volume_usdt: int = 0
    # fees actually paid, all time: (rail, fee_asset) -> sum in minor units
    fees_paid: dict[tuple[str, str], int] = field(default_factory=dict)
    # fee samples: (rail, fee_asset) -> recent (window) and baseline (before the window)
    fees_recent: dict[tuple[str, str], list[int]] = field(default_factory=dict)
    fees_baseline: dict[tuple[str, str], list[int]] = field(default_factory=dict)
    # failures inside the window per subject: (kind, subject) -> count (after any unlock)
    subject_failures: dict[tuple[str, str], int] = field(default_factory=dict)
    # active lockouts: (kind, subject) -> (lockout id, failures when locked)
    lockouts: dict[tuple[str, str], tuple[str, int]] = field(default_factory=dict)
    # loop -> seconds since its freshest heartbeat (any worker)
    heartbeat_age: dict[str, float] = field(default_factory=dict)
    outbox_backlog: int = 0
    outbox_oldest_age: float = 0.0
    signals: list[SignalValue] = field(default_factory=list)
    # alert deliveries: (channel, status) -> count; failed in window per channel
    deliveries: dict[tuple[str, str], int] = field(default_factory=dict)
    deliveries_failed_recent: dict[str, int] = field(default_factory=dict)
    deliveries_retrying: dict[str, int] = field(default_factory=dict)  # >= RETRYING_ATTEMPTS
    # merchant webhook endpoints disabled by their failures: (endpoint id, account, reason)
    webhooks_disabled: list[tuple[str, str, str]] = field(default_factory=list)
    # queued payouts held by a gas cap or a stale rate: hold reason -> (count, oldest few ids)
    holds: dict[str, tuple[int, list[str]]] = field(default_factory=dict)
    # payouts whose live TON attempt is `unknown`: (count, the oldest few payout ids)
    unknown_payouts: tuple[int, list[str]] = (0, [])
    # open hot wallet top-up orders of the treasury: asset -> the order contract's address
    topup_orders: dict[str, str] = field(default_factory=dict)

    def signal(self, name: str, **labels: str) -> SignalValue | None:
        for s in self.signals:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return s
        return None

    def signals_named(self, name: str) -> list[SignalValue]:
        return [s for s in self.signals if s.name == name]


def _age(now: datetime, then: datetime | None) -> float:
    return max((now - then).total_seconds(), 0.0) if then is not None else 0.0


async def _count_and_oldest(
    session: AsyncSession,
    now: datetime,
    created_at: InstrumentedAttribute[datetime],
    where: ColumnElement[bool],
) -> tuple[int, float]:
    """How many rows match `where`, and the age in seconds of the oldest of them."""
    count, oldest = (
        await session.execute(select(func.count(), func.min(created_at)).where(where))
    ).one()
    return int(count), _age(now, oldest)


async def finished_windows(session: AsyncSession, now: datetime) -> dict[int, tuple[int, int]]:
    """Payments succeeded and failed in each window of the success objective's burn rate."""
    seconds = sorted({w for pair in BURN_WINDOWS for w in pair[:2]})
    done = Payment.status.in_((PaymentStatus.SUCCEEDED, PaymentStatus.FAILED))
    columns = [
        func.sum(case((Payment.completed_at >= now - timedelta(seconds=w), 1), else_=0))
        for w in seconds
    ]
    rows = await session.execute(
        select(Payment.status, *columns)
        .where(Payment.completed_at >= now - timedelta(seconds=max(seconds)), done)
        .group_by(Payment.status)
    )
    counts = {w: [0, 0] for w in seconds}
    for status, *sums in rows:
        for w, n in zip(seconds, sums, strict=True):
            counts[w][0 if status == PaymentStatus.SUCCEEDED else 1] += int(n or 0)
    return {w: (ok, bad) for w, (ok, bad) in counts.items()}


async def awaiting_signers(session: AsyncSession, now: datetime, ids: list[str]) -> set[str]:
    """Of the treasury payouts `ids`, those whose order is proposed on chain and not expired:
    waiting for the multisig's signers (docs/TREASURY.md)."""
    if not ids:
        return set()
    rows = await session.execute(
        select(TreasuryOrder.payment_id).where(
            TreasuryOrder.payment_id.in_(ids),
            TreasuryOrder.status == OrderStatus.PROPOSED,
            TreasuryOrder.expiration_date > int(now.timestamp()),
        )
    )
    return {pid for pid in rows.scalars() if pid is not None}


async def build_snapshot(session: AsyncSession, settings: Settings, now: datetime) -> Snapshot:
    """Read the snapshot at `now` (the caller's clock) inside the caller's transaction."""
    window = settings.monitoring_window_seconds
    since = now - timedelta(seconds=window)
    snap = Snapshot(at=now, window_seconds=window)
    snap.finished_windows = await finished_windows(session, now)

    # -- payments by direction, status, asset and the rail of their latest attempt
    latest = (
        select(Attempt.payment_id, func.max(Attempt.number).label("n"))
        .group_by(Attempt.payment_id)
        .subquery()
    )
    last_attempt = (
        select(Attempt.payment_id, Attempt.rail)
        .join(latest, and_(latest.c.payment_id == Attempt.payment_id, latest.c.n == Attempt.number))
        .subquery()
    )
    rail = last_attempt.c.rail
    rows = await session.execute(
        select(
            Payment.direction,
            Payment.status,
            Payment.asset,
            rail,
            func.count(),
            func.sum(Payment.amount),
        )
        .outerjoin(last_attempt, last_attempt.c.payment_id == Payment.id)
        .group_by(Payment.direction, Payment.status, Payment.asset, rail)
    )
    for direction, status, asset, rail_name, count, total in rows:
        snap.payments[(direction, status, asset, rail_name or "none")] = (
            int(count),
            int(total or 0),
        )

    # -- finished inside the window
    rows = await session.execute(
        select(Payment.status, func.count(), func.sum(Payment.usdt_equivalent))
        .where(
            Payment.completed_at >= since,
            Payment.status.in_((PaymentStatus.SUCCEEDED, PaymentStatus.FAILED)),
        )
        .group_by(Payment.status)
    )
    for status, count, usdt in rows:
        snap.finished[status] = int(count)
        if status == PaymentStatus.SUCCEEDED:
            snap.window_volume_usdt = int(usdt or 0)
    rows = await session.execute(
        select(Attempt.rail, Attempt.status, func.count())
        .where(Attempt.updated_at >= since, Attempt.status.in_(FINAL_ATTEMPT_STATES))
        .group_by(Attempt.rail, Attempt.status)
    )
    for rail_name, status, count in rows:
        snap.attempts_finished[(rail_name, status)] = int(count)
    rows = await session.execute(
        select(Attempt.rail, Attempt.error_code, func.count())
        .where(Attempt.updated_at >= since, Attempt.status.in_(FAILED_ATTEMPT_STATES))
        .group_by(Attempt.rail, Attempt.error_code)
    )
    for rail_name, code, count in rows:
        key = (rail_name, code or "unknown")
        snap.failures_by_code[key] = snap.failures_by_code.get(key, 0) + int(count)

    # -- pending, stuck and progress
    snap.pending_count, snap.oldest_pending_age = await _count_and_oldest(
        session, now, Payment.created_at, Payment.status.in_(PENDING_STATES)
    )
    horizon = now - timedelta(
        seconds=min(settings.alert_stuck_seconds, settings.alert_progress_stale_seconds)
    )
    last_change = (
        select(func.max(Attempt.updated_at))
        .where(Attempt.payment_id == Payment.id)
        .correlate(Payment)
        .scalar_subquery()
    )
    rows = await session.execute(
        select(
            Payment.id,
            Payment.created_at,
            Payment.updated_at,
            Payment.target_confirmation_seconds,
            last_change,
            Payment.route,
        )
        .where(Payment.status.in_(PENDING_STATES), Payment.created_at < horizon)
        .order_by(Payment.created_at)
        .limit(LIST_CAP)
    )
    listed = list(rows)
    signing = await awaiting_signers(
        session, now, [pid for pid, *_, route in listed if route == "treasury"]
    )
    for pid, created, updated, target, attempt_changed, route in listed:
        changed = max(updated, attempt_changed) if attempt_changed is not None else updated
        snap.pending_old.append(
            PendingPayment(
                pid,
                _age(now, created),
                int(target),
                _age(now, changed),
                route,
                awaiting_signers=pid in signing,
            )
        )

    # -- fees
    rows = await session.execute(
        select(Attempt.rail, Attempt.fee_asset, func.sum(Attempt.fee_amount))
        .where(Attempt.fee_amount.is_not(None), Attempt.fee_asset.is_not(None))
        .group_by(Attempt.rail, Attempt.fee_asset)
    )
    for rail_name, fee_asset, total in rows:
        snap.fees_paid[(rail_name, fee_asset)] = int(total or 0)
    baseline_start = since - timedelta(seconds=settings.alert_fee_baseline_seconds)
    for target_map, lo, hi in (
        (snap.fees_recent, since, now),
        (snap.fees_baseline, baseline_start, since),
    ):
        rows = await session.execute(
            select(Attempt.rail, Attempt.fee_asset, Attempt.fee_amount)
            .where(
                Attempt.fee_amount.is_not(None),
                Attempt.fee_asset.is_not(None),
                Attempt.updated_at >= lo,
                Attempt.updated_at < hi,
            )
            .order_by(Attempt.updated_at.desc())
            .limit(LIST_CAP)
        )
        for rail_name, fee_asset, amount in rows:
            target_map.setdefault((rail_name, fee_asset), []).append(int(amount))

    # -- suspicious activity: failures per counterparty, API key and IP inside the window
    active = (await session.execute(select(Lockout).where(in_force(now)))).scalars()
    for lock in active:
        snap.lockouts[(lock.subject_kind, lock.subject)] = (lock.id, lock.failures)
    snap.subject_failures = await subject_failures(session, since)

    # -- workers, outbox, signals, deliveries
    for loop, beat in await session.execute(
        select(WorkerHeartbeat.loop, func.max(WorkerHeartbeat.beat_at)).group_by(
            WorkerHeartbeat.loop
        )
    ):
        snap.heartbeat_age[loop] = _age(now, beat)
    snap.outbox_backlog, snap.outbox_oldest_age = await _count_and_oldest(
        session, now, OutboxEvent.created_at, OutboxEvent.published_at.is_(None)
    )
    for sig in (await session.execute(select(MonitoringSignal))).scalars():
        snap.signals.append(
            SignalValue(
                sig.name, parse_labels(sig.labels), sig.kind, int(sig.value), sig.updated_at
            )
        )
    for channel, status, count in await session.execute(
        select(AlertDelivery.channel, AlertDelivery.status, func.count()).group_by(
            AlertDelivery.channel, AlertDelivery.status
        )
    ):
        snap.deliveries[(channel, status)] = int(count)
    for channel, count in await session.execute(
        select(AlertDelivery.channel, func.count())
        .where(AlertDelivery.status == DeliveryStatus.FAILED, AlertDelivery.created_at >= since)
        .group_by(AlertDelivery.channel)
    ):
        snap.deliveries_failed_recent[channel] = int(count)
    for channel, count in await session.execute(
        select(AlertDelivery.channel, func.count())
        .where(
            AlertDelivery.status == DeliveryStatus.PENDING,
            AlertDelivery.attempts >= RETRYING_ATTEMPTS,
        )
        .group_by(AlertDelivery.channel)
    ):
        snap.deliveries_retrying[channel] = int(count)
    for endpoint_id, account, reason in await session.execute(
        select(WebhookEndpoint.id, WebhookEndpoint.account_id, WebhookEndpoint.disabled_reason)
        .where(
            WebhookEndpoint.status == EndpointStatus.DISABLED,
            WebhookEndpoint.disabled_reason.in_((DisabledReason.FAILING, DisabledReason.GONE)),
            WebhookEndpoint.deleted_at.is_(None),
        )
        .order_by(WebhookEndpoint.id)
        .limit(LIST_CAP)
    ):
        snap.webhooks_disabled.append((endpoint_id, account, str(reason)))

    # -- payouts held by a gas cap (processing/ton_batch.py, within_gas_caps) or a stale rate
    held = Payment.status == PaymentStatus.QUEUED, Payment.hold_reason.in_(ALERTED_HOLDS)
    for hold, count in await session.execute(
        select(Payment.hold_reason, func.count()).where(*held).group_by(Payment.hold_reason)
    ):
        ids = await session.execute(
            select(Payment.id)
            .where(*held, Payment.hold_reason == hold)
            .order_by(Payment.created_at)
            .limit(GAS_HOLD_IDS)
        )
        snap.holds[str(hold)] = (int(count), list(ids.scalars()))

    # -- payouts whose attempt is unknown (processing/outcomes.py: mark_unknown, overdue)
    # TON's only: a backup rail's unknown attempt is resolved by polling its provider.
    unknown = (Attempt.status == AttemptStatus.UNKNOWN) & (Attempt.rail == "ton")
    count = (await session.execute(select(func.count()).where(unknown))).scalar_one()
    if count:
        ids = await session.execute(
            select(Attempt.payment_id)
            .where(unknown)
            .order_by(Attempt.updated_at)
            .limit(GAS_HOLD_IDS)
        )
        snap.unknown_payouts = (int(count), list(ids.scalars()))

    # -- open top-up orders (the low-balance alert links to them)
    rows = await session.execute(
        select(TreasuryOrder.asset, TreasuryOrder.order_address).where(
            TreasuryOrder.purpose == OrderPurpose.TOPUP,
            TreasuryOrder.status.in_(
                (OrderStatus.SIGNED, OrderStatus.PROPOSED, OrderStatus.EXECUTED)
            ),
        )
    )
    snap.topup_orders = {str(asset): str(order) for asset, order in rows}
    return snap
