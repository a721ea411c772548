"""The statuses of merchant webhook endpoints and of their deliveries, stored as text."""

from __future__ import annotations

from enum import StrEnum


class EndpointStatus(StrEnum):
    """An endpoint receives events while enabled; disabled by its owner, by a 410 answer or
    after failing for WEBHOOK_DISABLE_AFTER_SECONDS."""

    ENABLED = "enabled"
    DISABLED = "disabled"


class DeliveryStatus(StrEnum):
    """One event to one endpoint: pending (with retries) -> delivered | failed; canceled
    when its endpoint was deleted first."""

    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"
    CANCELED = "canceled"


class DisabledReason(StrEnum):
    """Why an endpoint stopped receiving: its owner, a 410 Gone answer, or failing too long."""

    BY_OWNER = "by_owner"
    GONE = "gone"
    FAILING = "failing"
