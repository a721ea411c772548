"""The statuses of the pipeline's own records: stored provider events (webhooks, statement
lines), as `StrEnum`s stored as text."""

from __future__ import annotations

from enum import StrEnum


class EventStatus(StrEnum):
    """received -> processed | ignored; failed when processing gave up."""

    RECEIVED = "received"
    PROCESSED = "processed"
    IGNORED = "ignored"
    FAILED = "failed"
