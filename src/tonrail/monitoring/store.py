"""The alert store: open, acknowledge, resolve; history; deliveries queued per channel.

One row per dedup key. A finding with no open alert opens (or reopens) it and queues a
trigger to each routed channel; the cooldown delays a re-trigger of the same key. An open or
acknowledged alert whose finding is gone is resolved, pending triggers are canceled and
channels that got the trigger get a resolve. Every change writes an `alert_events` row.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from tonrail import clock
from tonrail.errors import Conflict, NotFound
from tonrail.ids import new_id
from tonrail.monitoring.models import Alert, AlertDelivery, AlertEvent
from tonrail.monitoring.rules import Finding
from tonrail.monitoring.states import ACTIVE_ALERT_STATES, AlertStatus, DeliveryStatus

ACTIVE = ACTIVE_ALERT_STATES


def _event(
    session: AsyncSession,
    alert: Alert,
    kind: str,
    actor: str,
    details: dict[str, Any] | None = None,
) -> None:
    session.add(
        AlertEvent(alert_id=alert.id, kind=kind, actor=actor, details=details or {}, at=clock.now())
    )


def _queue(
    session: AsyncSession, alert: Alert, channels: Iterable[str], action: str, due: datetime
) -> int:
    n = 0
    for channel in channels:
        session.add(
            AlertDelivery(
                id=new_id("dlv"),
                alert_id=alert.id,
                channel=channel,
                action=action,
                status=DeliveryStatus.PENDING,
                attempts=0,
                next_attempt_at=due,
                created_at=clock.now(),
            )
        )
        n += 1
    return n


def route(
    finding_or_alert: Finding | Alert,
    routes: dict[str, tuple[str, ...]],
    configured: Iterable[str],
) -> list[str]:
    """Channels for a severity that are configured; a failing channel never gets its own alert."""
    wanted = routes.get(finding_or_alert.severity, ())
    available = set(configured)
    if finding_or_alert.rule == "channel_failing":
        available.discard(str(finding_or_alert.details.get("channel")))
    return [c for c in wanted if c in available]


async def _deliveries_of_cycle(session: AsyncSession, alert: Alert) -> Sequence[AlertDelivery]:
    return (
        (
            await session.execute(
                select(AlertDelivery).where(
                    AlertDelivery.alert_id == alert.id,
                    AlertDelivery.created_at >= alert.opened_at,
                )
            )
        )
        .scalars()
        .all()
    )


async def apply_findings(
    session: AsyncSession,
    findings: Sequence[Finding],
    routes: dict[str, tuple[str, ...]],
    configured: Iterable[str],
    cooldown_seconds: int,
) -> int:
    """Bring the alerts in line with the findings of one evaluation. Returns changes made."""
    now = clock.now()
    configured = list(configured)
    changes = 0
    by_key = {f.dedup_key: f for f in findings}
    rows = (
        (
            await session.execute(
                select(Alert).where(
                    (Alert.status.in_(ACTIVE)) | (Alert.dedup_key.in_(list(by_key)))
                )
            )
        )
        .scalars()
        .all()
    )
    alerts = {a.dedup_key: a for a in rows}
    for key, finding in by_key.items():
        alert = alerts.get(key)
        if alert is None:
            # A new row, field by field: alike other inserts in shape only.
            alert = Alert(
                id=new_id("alrt"),
                dedup_key=key,
                rule=finding.rule,
                severity=finding.severity,
                status=AlertStatus.OPEN,
                summary=finding.summary,
                details=finding.details,
                opened_at=now,
                last_seen_at=now,
            )
            session.add(alert)
            await session.flush()
            _event(session, alert, "opened", "system", {"summary": finding.summary})
            await _trigger(session, alert, finding, routes, configured, cooldown_seconds, now)
            changes += 1
        elif alert.status == AlertStatus.RESOLVED:
            alert.status = AlertStatus.OPEN
            alert.opened_at = now
            alert.resolved_at = None
            alert.acknowledged_at = None
            alert.acknowledged_by = None
            alert.severity = finding.severity
            alert.summary = finding.summary
            alert.details = finding.details
            alert.last_seen_at = now
            _event(session, alert, "reopened", "system", {"summary": finding.summary})
            await _trigger(session, alert, finding, routes, configured, cooldown_seconds, now)
            changes += 1
        else:
            alert.last_seen_at = now
            alert.summary = finding.summary
            alert.details = finding.details
    for key, alert in alerts.items():
        if alert.status in ACTIVE and key not in by_key:
            await resolve(session, alert, "system", "condition cleared")
            changes += 1
    await session.flush()
    return changes


async def _trigger(
    session: AsyncSession,
    alert: Alert,
    finding: Finding,
    routes: dict[str, tuple[str, ...]],
    configured: list[str],
    cooldown_seconds: int,
    now: datetime,
) -> None:
    due = now
    if alert.last_triggered_at is not None:
        due = max(now, alert.last_triggered_at + timedelta(seconds=cooldown_seconds))
    channels = route(finding, routes, configured)
    if channels:
        alert.last_triggered_at = due
        _queue(session, alert, channels, "trigger", due)
        if due > now:
            _event(session, alert, "cooldown", "system", {"deliver_at": due.isoformat()})


async def resolve(session: AsyncSession, alert: Alert, actor: str, reason: str) -> None:
    """Resolve: cancel undelivered triggers, tell the channels that got the trigger."""
    if alert.status not in ACTIVE:
        raise Conflict(f"alert {alert.id} is {alert.status}", code="alert_not_active")
    now = clock.now()
    told: set[str] = set()
    for d in await _deliveries_of_cycle(session, alert):
        if d.action != "trigger":
            continue
        in_flight = d.locked_until is not None and d.locked_until > now
        if d.status == DeliveryStatus.SENT or (d.status == DeliveryStatus.PENDING and in_flight):
            told.add(d.channel)
        elif d.status == DeliveryStatus.PENDING:
            d.status = DeliveryStatus.CANCELED
    alert.status = AlertStatus.RESOLVED
    alert.resolved_at = now
    _event(session, alert, "resolved", actor, {"reason": reason})
    _queue(session, alert, sorted(told), "resolve", now)


async def acknowledge(session: AsyncSession, alert_id: str, actor: str) -> Alert:
    """An operator has seen it: no more triggers until it resolves; PagerDuty is told."""
    alert = await session.get(Alert, alert_id)
    if alert is None:
        raise NotFound(f"no alert {alert_id!r}", code="alert_not_found")
    if alert.status != AlertStatus.OPEN:
        raise Conflict(f"alert {alert_id} is {alert.status}, not open", code="alert_not_open")
    alert.status = AlertStatus.ACKNOWLEDGED
    alert.acknowledged_at = clock.now()
    alert.acknowledged_by = actor
    _event(session, alert, "acknowledged", actor)
    sent = {
        d.channel
        for d in await _deliveries_of_cycle(session, alert)
        if d.action == "trigger" and d.status == DeliveryStatus.SENT
    }
    _queue(session, alert, sorted(sent & {"pagerduty"}), "acknowledge", clock.now())
    return alert


async def resolve_by_id(session: AsyncSession, alert_id: str, actor: str) -> Alert:
    alert = await session.get(Alert, alert_id)
    if alert is None:
        raise NotFound(f"no alert {alert_id!r}", code="alert_not_found")
    await resolve(session, alert, actor, "resolved by an operator")
    return alert


async def history(session: AsyncSession, alert_id: str) -> Sequence[AlertEvent]:
    return (
        (
            await session.execute(
                select(AlertEvent).where(AlertEvent.alert_id == alert_id).order_by(AlertEvent.id)
            )
        )
        .scalars()
        .all()
    )


async def record_report(
    session: AsyncSession,
    dedup_key: str,
    summary: str,
    body: str,
    channels: Iterable[str],
) -> Alert:
    """A report (daily audit) is an informational alert that is resolved at once."""
    now = clock.now()
    alert = Alert(
        id=new_id("alrt"),
        dedup_key=dedup_key,
        rule="security_audit",
        severity="info",
        status=AlertStatus.RESOLVED,
        summary=summary,
        details={"body": body},
        opened_at=now,
        last_seen_at=now,
        resolved_at=now,
        last_triggered_at=now,
    )
    session.add(alert)
    await session.flush()
    _event(session, alert, "report", "system")
    _queue(session, alert, channels, "report", now)
    return alert


async def mark_delivery(session: AsyncSession, delivery_id: str, values: dict[str, Any]) -> None:
    await session.execute(
        update(AlertDelivery)
        .where(AlertDelivery.id == delivery_id)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
