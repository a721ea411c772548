"""SQL of the service objectives over the Overview's range (monitoring/slo.py does the
arithmetic; docs/monitoring.md, "Service objectives")."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import and_, case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from tonrail.dashboard.queries.ranges import Window, duration_ms
from tonrail.monitoring.models import MonitoringMinute
from tonrail.monitoring.signals import API_LATENCY, READINESS, parse_labels
from tonrail.monitoring.slo import (
    Objective,
    Targets,
    confirmation_objective,
    latency_objective,
    success_objective,
    uptime_objective,
)
from tonrail.payments.models import Payment
from tonrail.payments.states import PaymentStatus
from tonrail.settings import Settings


def _minute(at: datetime) -> datetime:
    return at.replace(second=0, microsecond=0)


async def confirmed_within(
    session: AsyncSession, window: Window, dialect: str, seconds: int
) -> tuple[int, int]:
    """(payouts that succeeded in the range and took at most `seconds`, all of them)."""
    took = duration_ms(Payment.created_at, Payment.completed_at, dialect)
    payout_done = and_(Payment.direction == "out", Payment.status == PaymentStatus.SUCCEEDED)
    if dialect == "sqlite":
        payout_done = case((payout_done, 1), else_=0) == 1  # the completion index drives it
    within, total = (
        await session.execute(
            select(func.sum(case((took <= seconds * 1000, 1), else_=0)), func.count()).where(
                Payment.completed_at >= window.since,
                Payment.completed_at <= window.now,
                payout_done,
            )
        )
    ).one()
    return int(within or 0), int(total)


async def api_latency(session: AsyncSession, window: Window) -> dict[str, int]:
    """/v1 requests per latency bucket `le` in the range's minutes."""
    rows = await session.execute(
        select(MonitoringMinute.labels, func.sum(MonitoringMinute.value))
        .where(
            MonitoringMinute.name == API_LATENCY,
            MonitoringMinute.minute >= _minute(window.since),
            MonitoringMinute.minute <= window.now,
        )
        .group_by(MonitoringMinute.labels)
    )
    counts: dict[str, int] = {}
    for labels, n in rows:
        le = parse_labels(labels).get("le", "+Inf")
        counts[le] = counts.get(le, 0) + int(n or 0)
    return counts


async def readiness(
    session: AsyncSession, window: Window, settle_seconds: float
) -> tuple[int, int]:
    """(minutes with an ok /readyz answer, minutes watched): from the first probe in the
    range to the last minute old enough that every process has written its counts
    (a minute plus `settle_seconds` ago); a minute without an ok answer counts as down."""
    last = _minute(window.now - timedelta(seconds=60 + settle_seconds))
    in_range = (
        MonitoringMinute.name == READINESS,
        MonitoringMinute.minute >= _minute(window.since),
        MonitoringMinute.minute <= last,
    )
    first = (
        await session.execute(select(func.min(MonitoringMinute.minute)).where(*in_range))
    ).scalar()
    if first is None:
        return 0, 0
    up = (
        await session.execute(
            select(func.count(func.distinct(MonitoringMinute.minute))).where(
                *in_range, MonitoringMinute.labels == "outcome=ok", MonitoringMinute.value > 0
            )
        )
    ).scalar_one()
    watched = int((last - first).total_seconds() // 60) + 1
    return int(up), watched


async def objectives(
    session: AsyncSession,
    window: Window,
    dialect: str,
    settings: Settings,
    succeeded: int,
    failed: int,
) -> list[Objective]:
    """The four objectives over the range (`succeeded`/`failed`: the range's finished
    payments, which the Overview counts already)."""
    t = Targets.of(settings)
    within, confirmed = await confirmed_within(session, window, dialect, t.confirmation_seconds)
    up, watched = await readiness(session, window, settings.signals_flush_seconds)
    return [
        success_objective(succeeded, failed, t),
        confirmation_objective(within, confirmed, t),
        latency_objective(await api_latency(session, window), t),
        uptime_objective(up, watched, t),
    ]
