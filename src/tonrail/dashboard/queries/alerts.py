"""SQL of the Alerts page: counts by status, the active alerts, resolved ones by page, and
one alert's story (its events and deliveries). Changes go through monitoring/store.py."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from tonrail.dashboard.queries.fees import (
    Page,
    ParamInvalid,
    older_than,
    page_of,
    parse_choice,
    set_filters,
)
from tonrail.monitoring.models import Alert, AlertDelivery, AlertEvent
from tonrail.monitoring.rules import SEVERITIES
from tonrail.monitoring.states import AlertStatus
from tonrail.monitoring.store import ACTIVE

STATUSES: tuple[str, ...] = tuple(AlertStatus)
RULE_RE = re.compile(r"^[a-z0-9_]{1,48}$")
ACTIVE_MAX = 200  # active alerts are few; more than this is itself the news
SEVERITY_RANK = case(
    *((Alert.severity == s, i) for i, s in enumerate(SEVERITIES)), else_=len(SEVERITIES)
)


@dataclass(frozen=True, slots=True)
class AlertFilters:
    severity: str | None = None
    rule: str | None = None

    def raw(self) -> dict[str, str]:
        return set_filters(self)


def parse_filters(params: Mapping[str, str]) -> AlertFilters:
    rule = params.get("rule") or None
    if rule is not None and not RULE_RE.match(rule):
        raise ParamInvalid(
            "rule is a rule name like success_rate", param="rule", code="rule_invalid"
        )
    return AlertFilters(parse_choice(params.get("severity"), SEVERITIES, "severity"), rule)


def _where(f: AlertFilters) -> list[ColumnElement[bool]]:
    out: list[ColumnElement[bool]] = []
    if f.severity:
        out.append(Alert.severity == f.severity)
    if f.rule:
        out.append(Alert.rule == f.rule)
    return out


async def counts(session: AsyncSession) -> tuple[dict[str, int], dict[str, int]]:
    """Alerts by status (all of them: one row per dedup key), and open ones by severity."""
    rows = (
        await session.execute(
            select(Alert.status, Alert.severity, func.count()).group_by(
                Alert.status, Alert.severity
            )
        )
    ).all()
    by_status = {s: 0 for s in STATUSES}
    open_by_severity: dict[str, int] = {}
    for status, severity, n in rows:
        by_status[str(status)] = by_status.get(str(status), 0) + int(n)
        if status == AlertStatus.OPEN:
            open_by_severity[str(severity)] = int(n)
    return by_status, open_by_severity


async def active(session: AsyncSession, f: AlertFilters) -> dict[str, list[Alert]]:
    """Open and acknowledged alerts, the most severe and newest first."""
    stmt = (
        select(Alert)
        .where(Alert.status.in_(ACTIVE), *_where(f))
        .order_by(SEVERITY_RANK, Alert.opened_at.desc(), Alert.id.desc())
        .limit(ACTIVE_MAX)
    )
    out: dict[str, list[Alert]] = {s: [] for s in ACTIVE}
    for alert in (await session.execute(stmt)).scalars():
        out[alert.status].append(alert)
    return out


async def resolved(
    session: AsyncSession, f: AlertFilters, limit: int, before: str | None = None
) -> Page[Alert]:
    """Resolved alerts, the latest resolved first, keyset on (resolved_at, id)."""
    conditions = [Alert.status == AlertStatus.RESOLVED, *_where(f)]
    conditions += older_than(before, Alert.resolved_at, Alert.id)
    stmt = (
        select(Alert)
        .where(*conditions)
        .order_by(Alert.resolved_at.desc(), Alert.id.desc())
        .limit(limit + 1)
    )
    rows = list((await session.execute(stmt)).scalars())
    return page_of(rows, limit, lambda a: (a.resolved_at, a.id))


@dataclass(frozen=True, slots=True)
class AlertStory:
    alert: Alert
    events: Sequence[AlertEvent]
    deliveries: Sequence[AlertDelivery]

    @property
    def resolved_by(self) -> str | None:
        done = [e for e in self.events if e.kind == "resolved"]
        return done[-1].actor if done else None


async def story(session: AsyncSession, alert_id: str) -> AlertStory | None:
    alert = await session.get(Alert, alert_id)
    if alert is None:
        return None
    events = (
        (
            await session.execute(
                select(AlertEvent).where(AlertEvent.alert_id == alert_id).order_by(AlertEvent.id)
            )
        )
        .scalars()
        .all()
    )
    deliveries = (
        (
            await session.execute(
                select(AlertDelivery)
                .where(AlertDelivery.alert_id == alert_id)
                .order_by(AlertDelivery.created_at, AlertDelivery.id)
            )
        )
        .scalars()
        .all()
    )
    return AlertStory(alert, events, deliveries)


async def last_resolution(session: AsyncSession, alert_id: str) -> tuple[str, datetime] | None:
    """Who resolved the alert last, and when (from its history)."""
    row = (
        await session.execute(
            select(AlertEvent.actor, AlertEvent.at)
            .where(AlertEvent.alert_id == alert_id, AlertEvent.kind == "resolved")
            .order_by(AlertEvent.id.desc())
            .limit(1)
        )
    ).first()
    return (str(row[0]), row[1]) if row is not None else None
