"""Tables of monitoring: alerts and their history, deliveries, signals, audits."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from tonrail.db import Base, BigInt, JsonDoc, StatusText, UTCDateTime
from tonrail.monitoring.states import AlertStatus, DeliveryStatus


class Alert(Base):
    """One alert per dedup key; it reopens when its condition comes back."""

    __tablename__ = "alerts"

    # Table columns: alike other tables in shape only.
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    dedup_key: Mapped[str] = mapped_column(String(255), unique=True)
    rule: Mapped[str] = mapped_column(String(48))
    severity: Mapped[str] = mapped_column(String(16))
    status: Mapped[AlertStatus] = mapped_column(StatusText(AlertStatus, 16))
    summary: Mapped[str] = mapped_column(Text)
    details: Mapped[dict[str, Any]] = mapped_column(JsonDoc, default=dict)
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime)
    acknowledged_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    acknowledged_by: Mapped[str | None] = mapped_column(String(80))
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # When a trigger was last queued for delivery: the cooldown counts from here.
    last_triggered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (Index("ix_alerts_status", "status"),)


class AlertEvent(Base):
    """The history of alerts: opened, reopened, acknowledged, resolved, delivered, failed."""

    __tablename__ = "alert_events"

    # Table columns: alike other tables in shape only.
    id: Mapped[int] = mapped_column(BigInt, primary_key=True, autoincrement=True)
    alert_id: Mapped[str] = mapped_column(ForeignKey("alerts.id"), index=True)
    kind: Mapped[str] = mapped_column(String(24))
    actor: Mapped[str] = mapped_column(String(80))
    details: Mapped[dict[str, Any]] = mapped_column(JsonDoc, default=dict)
    at: Mapped[datetime] = mapped_column(UTCDateTime)


class AlertDelivery(Base):
    """One message of one alert to one channel: queued, sent with retries, or failed."""

    __tablename__ = "alert_deliveries"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    alert_id: Mapped[str] = mapped_column(ForeignKey("alerts.id"), index=True)
    channel: Mapped[str] = mapped_column(String(16))
    action: Mapped[str] = mapped_column(String(16))  # trigger | acknowledge | resolve | report
    status: Mapped[DeliveryStatus] = mapped_column(StatusText(DeliveryStatus, 16))
    attempts: Mapped[int] = mapped_column(BigInt, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    locked_by: Mapped[str | None] = mapped_column(String(64))
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (Index("ix_alert_deliveries_due", "status", "next_attempt_at"),)


class MonitoringSignal(Base):
    """A value fed by a process (toncenter calls, hot wallet balance, congestion...).

    Integers only: counts, minor units, basis points, milliseconds. Stored so that every
    process (API, workers) reads what any other process measured.
    """

    __tablename__ = "monitoring_signals"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    labels: Mapped[str] = mapped_column(String(200), primary_key=True)
    kind: Mapped[str] = mapped_column(String(8))  # gauge | counter
    value: Mapped[int] = mapped_column(BigInt)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class SecurityReport(Base):
    """The daily security audit, one per UTC day."""

    __tablename__ = "security_reports"

    day: Mapped[str] = mapped_column(String(10), primary_key=True)
    body: Mapped[dict[str, Any]] = mapped_column(JsonDoc)
    config_fingerprint: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class MonitoringMinute(Base):
    """A count per minute (API latency per bucket, /readyz answers), added to by every
    process: what the service objectives (monitoring/slo.py) read over any range."""

    __tablename__ = "monitoring_minutes"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    labels: Mapped[str] = mapped_column(String(200), primary_key=True)
    minute: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    value: Mapped[int] = mapped_column(BigInt)

    __table_args__ = (Index("ix_monitoring_minutes_minute", "minute"),)
