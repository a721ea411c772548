"""Sending queued alert deliveries: each channel on its own, retried with backoff.

Deliveries are claimed with a lease (kit/claims.py), so any number of workers share them
and a dead worker's deliveries are taken over. Channels are called concurrently with a
timeout each: a slow or broken channel never delays or blocks another. A failure is kept on
the delivery (`last_error`, `attempts`), counted in /metrics, and after the last attempt the
delivery is `failed` and the `channel_failing` rule alerts through the other channels.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import timedelta

import structlog
from sqlalchemy import select

from tonrail import clock
from tonrail.db import Database
from tonrail.kit.claims import claim
from tonrail.monitoring.channels.base import AlertMessage, Channel, ChannelError
from tonrail.monitoring.models import Alert, AlertDelivery, AlertEvent
from tonrail.monitoring.states import DeliveryStatus
from tonrail.monitoring.store import mark_delivery
from tonrail.settings import Settings

log = structlog.get_logger(__name__)
MAX_BACKOFF_SECONDS = 300.0


def backoff(settings: Settings, attempts: int) -> float:
    """Seconds before attempt `attempts + 1`: base x 2^(attempts - 1), capped."""
    delay = settings.alert_channel_retry_base_seconds * 2.0 ** max(attempts - 1, 0)
    return float(min(delay, MAX_BACKOFF_SECONDS))


def message_of(alert: Alert, delivery: AlertDelivery) -> AlertMessage:
    details = dict(alert.details or {})
    body = str(details.pop("body", "")) if delivery.action == "report" else ""
    # A field-by-field copy into the channel's message; alike other views in shape only.
    return AlertMessage(
        alert_id=alert.id,
        dedup_key=alert.dedup_key,
        action=delivery.action,
        rule=alert.rule,
        severity=alert.severity,
        summary=alert.summary,
        details=details,
        at=alert.opened_at,
        body=body,
    )


async def _send(channel: Channel | None, message: AlertMessage, seconds: float) -> None:
    """Send within `seconds`; raises ChannelError or TimeoutError."""
    if channel is None:
        raise ChannelError("channel is not configured", retryable=False)
    async with asyncio.timeout(seconds):
        await channel.send(message)


async def deliver_due(
    db: Database,
    settings: Settings,
    channels: Mapping[str, Channel],
    worker_id: str,
    limit: int = 50,
) -> int:
    """Send the deliveries that are due; returns how many were sent successfully."""
    now = clock.now()
    async with db.transaction() as session:
        due = await claim(
            session,
            AlertDelivery,
            (AlertDelivery.status == DeliveryStatus.PENDING)
            & (AlertDelivery.next_attempt_at <= now),
            worker_id=worker_id,
            lease_seconds=max(settings.alert_channel_timeout_seconds * 3, 30),
            limit=limit,
            order_by=(AlertDelivery.next_attempt_at,),
        )
        if not due:
            return 0
        ids = {d.alert_id for d in due}
        alerts = {
            a.id: a
            for a in (await session.execute(select(Alert).where(Alert.id.in_(ids)))).scalars()
        }
    messages = [message_of(alerts[d.alert_id], d) for d in due]
    results = await asyncio.gather(
        *(
            _send(channels.get(d.channel), m, settings.alert_channel_timeout_seconds)
            for d, m in zip(due, messages, strict=True)
        ),
        return_exceptions=True,
    )
    sent = 0
    async with db.transaction() as session:
        done_at = clock.now()
        for d, result in zip(due, results, strict=True):
            attempts = d.attempts + 1
            if result is None:
                sent += 1
                await mark_delivery(
                    session,
                    d.id,
                    {
                        "status": DeliveryStatus.SENT,
                        "attempts": attempts,
                        "sent_at": done_at,
                        "last_error": None,
                        "locked_by": None,
                        "locked_until": None,
                    },
                )
                session.add(
                    AlertEvent(
                        alert_id=d.alert_id,
                        kind="delivered",
                        actor=f"channel:{d.channel}",
                        details={"action": d.action, "attempts": attempts},
                        at=done_at,
                    )
                )
                continue
            if isinstance(result, ChannelError):
                error, retryable = str(result), result.retryable
            elif isinstance(result, TimeoutError):
                error, retryable = "timed out", True
            else:
                error, retryable = f"{type(result).__name__}", True
            final = not retryable or attempts >= settings.alert_channel_max_attempts
            log.warning(
                "alert delivery failed",
                channel=d.channel,
                delivery=d.id,
                alert=d.alert_id,
                attempts=attempts,
                final=final,
                error=error,
            )
            values: dict[str, object] = {
                "attempts": attempts,
                "last_error": error[:500],
                "locked_by": None,
                "locked_until": None,
            }
            if final:
                values["status"] = DeliveryStatus.FAILED
            else:
                values["next_attempt_at"] = done_at + timedelta(seconds=backoff(settings, attempts))
            await mark_delivery(session, d.id, values)
            session.add(
                AlertEvent(
                    alert_id=d.alert_id,
                    kind="delivery_failed" if final else "delivery_retry",
                    actor=f"channel:{d.channel}",
                    details={"action": d.action, "attempts": attempts, "error": error[:300]},
                    at=done_at,
                )
            )
    return sent
