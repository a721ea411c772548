"""Worker loops of monitoring. Each takes the worker's context and returns items handled.

Register in worker.LOOPS: `evaluate_alerts` (every 2 s), `security_audit` (every 60 s; sends
once per UTC day), `publish_cloudwatch` (every 60 s; no-op unless CLOUDWATCH_ENABLED),
`publish_signals` (every 2 s; only needed in processes that run no `evaluate_alerts`).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Protocol

import httpx
import structlog
from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError

from tonrail import clock
from tonrail.db import Database
from tonrail.monitoring import rules, store
from tonrail.monitoring.audit import build_report
from tonrail.monitoring.channels.base import Channel
from tonrail.monitoring.channels.registry import configured_channels
from tonrail.monitoring.cloudwatch import CloudWatchPublisher
from tonrail.monitoring.delivery import deliver_due
from tonrail.monitoring.models import Alert, SecurityReport
from tonrail.monitoring.signals import persist_signals, prune_minutes
from tonrail.monitoring.snapshot import Snapshot, build_snapshot
from tonrail.security import lockouts
from tonrail.settings import Settings, parse_alert_routes

log = structlog.get_logger(__name__)
# PostgreSQL advisory lock key of the alert evaluation (any fixed 64-bit number).
EVALUATION_LOCK = 7_130_007


class MonitoringContext(Protocol):
    """What the loops need of `tonrail.worker.WorkerContext`."""

    @property
    def db(self) -> Database: ...

    @property
    def settings(self) -> Settings: ...

    @property
    def worker_id(self) -> str: ...


async def take_snapshot(db: Database, settings: Settings) -> Snapshot:
    async with db.transaction() as session:
        return await build_snapshot(session, settings, clock.now())


async def active_alert_counts(db: Database) -> dict[tuple[str, str], int]:
    async with db.transaction() as session:
        rows = await session.execute(
            select(Alert.rule, Alert.severity, func.count())
            .where(Alert.status.in_(store.ACTIVE))
            .group_by(Alert.rule, Alert.severity)
        )
        return {(rule, severity): int(n) for rule, severity, n in rows}


async def evaluate_once(
    db: Database,
    settings: Settings,
    channels: dict[str, Channel],
) -> int:
    """Snapshot -> lockouts -> rules -> alert store. Returns the changes made."""
    thresholds = rules.Thresholds.from_settings(settings)
    routes = parse_alert_routes(settings.alert_routes)
    try:
        async with db.transaction() as session:
            # One evaluator at a time: another worker evaluating right now has it covered.
            # (SQLite serializes writers already: every transaction is BEGIN IMMEDIATE.)
            if (
                db.dialect == "postgresql"
                and not (
                    await session.execute(
                        text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": EVALUATION_LOCK}
                    )
                ).scalar_one()
            ):
                return 0
            now = clock.now()
            # Expired locks end first: their failures stop counting, the alert resolves.
            await lockouts.close_expired(session, now)
            snap = await build_snapshot(session, settings, now)
            for kind, subject, failures in rules.subjects_to_lock(snap, thresholds):
                lock = await lockouts.lock(
                    session,
                    kind,
                    subject,
                    failures,
                    f"{failures} failures in {snap.window_seconds} s",
                    settings.lockout_seconds,
                )
                if lock is None:
                    continue  # locked in the request path meanwhile
                snap.lockouts[(kind, subject)] = (lock.id, failures)
                log.warning("subject locked", kind=kind, subject=subject, failures=failures)
            findings = rules.evaluate(snap, thresholds)
            return await store.apply_findings(
                session, findings, routes, channels, settings.alert_cooldown_seconds
            )
    except IntegrityError:
        # A lockout or alert was created concurrently (a manual action); the next run retries.
        log.info("alert evaluation raced with another worker")
        return 0


PRUNE_EVERY_SECONDS = 600.0  # per-minute counts are pruned this often at most (per process)
_pruned_at: list[float] = [-PRUNE_EVERY_SECONDS]


async def evaluate_alerts(ctx: MonitoringContext) -> int:
    """Evaluate every alert rule and send what is due. Returns changes plus sent messages."""
    await persist_signals(ctx.db)
    if time.monotonic() - _pruned_at[0] >= PRUNE_EVERY_SECONDS:
        _pruned_at[0] = time.monotonic()
        await prune_minutes(ctx.db, ctx.settings.slo_minutes_keep_days)
    async with httpx.AsyncClient(timeout=ctx.settings.alert_channel_timeout_seconds) as client:
        channels = configured_channels(ctx.settings, client)
        changes = await evaluate_once(ctx.db, ctx.settings, channels)
        sent = await deliver_due(ctx.db, ctx.settings, channels, ctx.worker_id)
    return changes + sent


async def publish_signals(ctx: MonitoringContext) -> int:
    """Write this process's buffered signals (for processes without `evaluate_alerts`)."""
    await persist_signals(ctx.db)
    return 0


async def publish_cloudwatch(ctx: MonitoringContext) -> int:
    """Put the CloudWatch metrics of the current snapshot (only with CLOUDWATCH_ENABLED)."""
    if not ctx.settings.cloudwatch_enabled:
        return 0
    snap = await take_snapshot(ctx.db, ctx.settings)
    await CloudWatchPublisher(ctx.settings).publish(snap)
    return 0  # periodic: never ask the loop to run again at once


def audit_day(now: datetime) -> datetime:
    """The start of the UTC day before `now` (the day the next audit covers)."""
    today = datetime(now.year, now.month, now.day, tzinfo=UTC)
    return today - timedelta(days=1)


async def run_security_audit(db: Database, settings: Settings, day_start: datetime) -> bool:
    """Build, store and queue the audit of one UTC day; False if it exists already."""
    routes = parse_alert_routes(settings.alert_routes)
    async with httpx.AsyncClient() as client:
        configured = list(configured_channels(settings, client))
    wanted = routes.get("info", ())
    channels = [c for c in ("email", *wanted) if c in configured and c != "pagerduty"]
    try:
        async with db.transaction() as session:
            report = await build_report(session, settings, day_start)
            # A new row, field by field: alike other inserts in shape only.
            session.add(
                SecurityReport(
                    day=report.day,
                    body=report.body,
                    config_fingerprint=report.fingerprint,
                    created_at=clock.now(),
                )
            )
            await session.flush()
            await store.record_report(
                session,
                f"security_audit:{report.day}",
                f"security audit {report.day}: {len(report.body['large_payouts'])} large payouts, "
                f"{len(report.body['lockouts_created'])} lockouts",
                report.text(),
                sorted(set(channels)),
            )
    except IntegrityError:
        return False
    return True


async def security_audit(ctx: MonitoringContext) -> int:
    """Once per UTC day: the audit of the previous day, stored and sent as a report."""
    day = audit_day(clock.now())
    async with ctx.db.transaction() as session:
        if await session.get(SecurityReport, day.date().isoformat()) is not None:
            return 0
    await run_security_audit(ctx.db, ctx.settings, day)
    return 0
