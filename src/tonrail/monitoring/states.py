"""The statuses of alerts and of their deliveries to channels, as `StrEnum`s stored as text."""

from __future__ import annotations

from enum import StrEnum
from typing import Final


class AlertStatus(StrEnum):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


class DeliveryStatus(StrEnum):
    """One message to one channel: pending (with retries) -> sent | failed; canceled when
    its alert resolved before it went."""

    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"
    CANCELED = "canceled"


# Alerts someone should still look at.
ACTIVE_ALERT_STATES: Final[tuple[AlertStatus, ...]] = (AlertStatus.OPEN, AlertStatus.ACKNOWLEDGED)
