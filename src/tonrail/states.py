"""The statuses of payments and attempts: the money model's vocabulary, below every domain.

`StrEnum`s whose values are the strings stored in the database, so a status compares equal
to its stored text and needs no migration. The moves between them are `payments/states.py`;
no module spells a status out as text (tests/test_status_literals.py).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final


class PaymentStatus(StrEnum):
    REQUIRES_APPROVAL = "requires_approval"
    QUEUED = "queued"
    PROCESSING = "processing"
    AWAITING_PAYMENT = "awaiting_payment"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"
    EXPIRED = "expired"


class AttemptStatus(StrEnum):
    CREATED = "created"
    SUBMITTED = "submitted"
    # The outcome cannot be known yet; it must be resolved before anything else.
    UNKNOWN = "unknown"
    CONFIRMED = "confirmed"
    FAILED = "failed"
    EXPIRED = "expired"


class PollStatus(StrEnum):
    """What a rail answers when asked about an attempt: still pending, or how it ended."""

    PENDING = "pending"
    CONFIRMED = "confirmed"
    FAILED = "failed"
    EXPIRED = "expired"


# An attempt in one of these states may still move money: no other attempt may start.
LIVE_ATTEMPT_STATES: Final[frozenset[AttemptStatus]] = frozenset(
    {AttemptStatus.CREATED, AttemptStatus.SUBMITTED, AttemptStatus.UNKNOWN}
)
# An attempt that ended without moving money: the payment may be tried again.
FAILED_ATTEMPT_STATES: Final[frozenset[AttemptStatus]] = frozenset(
    {AttemptStatus.FAILED, AttemptStatus.EXPIRED}
)
FINAL_ATTEMPT_STATES: Final[frozenset[AttemptStatus]] = frozenset(
    {AttemptStatus.CONFIRMED, AttemptStatus.FAILED, AttemptStatus.EXPIRED}
)


class RefundStatus(StrEnum):
    """A refund of an invoice: pending while its payout may still move money, then how the
    payout ended (succeeded; failed or canceled count as failed: nothing went back)."""

    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
