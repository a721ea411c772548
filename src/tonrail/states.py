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


# Attempt error codes of a USDT transfer our own jetton wallet refused for too little TON
# attached (rails/ton/trace.py, processing/outcomes.py): `jetton_attach_low` is retried with
# more TON, `jetton_attach_exhausted` is the refusal with no retry left. Our doing, never
# the counterparty's (monitoring/suspicious.py does not count them).
JETTON_ATTACH_LOW: Final = "jetton_attach_low"
JETTON_ATTACH_EXHAUSTED: Final = "jetton_attach_exhausted"
OWN_FAILURE_CODES: Final[frozenset[str]] = frozenset({JETTON_ATTACH_LOW, JETTON_ATTACH_EXHAUSTED})


class RefundStatus(StrEnum):
    """A refund of an invoice: pending while its payout may still move money, then how the
    payout ended (succeeded; failed or canceled count as failed: nothing went back)."""

    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class HoldReason(StrEnum):
    """Why a queued TON payout waits (`payments.hold_reason`); cleared when it goes."""

    INSUFFICIENT_HOT_WALLET_BALANCE = "insufficient_hot_wallet_balance"
    GAS_CAP_TON_TRANSFER_FEE = "gas_cap_ton_transfer_fee"  # TON_GAS_CAP_TON_TRANSFER
    GAS_CAP_JETTON_ATTACH = "gas_cap_jetton_attach"  # TON_GAS_CAP_JETTON_ATTACH
    GAS_CAP_JETTON_TRANSFER_FEE = "gas_cap_jetton_transfer_fee"  # TON_GAS_CAP_JETTON_TRANSFER
    # The limits need a rate (rates.py) that is older than RATE_MAX_AGE_SECONDS or unreadable.
    RATE_STALE = "rate_stale"


GAS_CAP_HOLDS = frozenset(
    {
        HoldReason.GAS_CAP_TON_TRANSFER_FEE,
        HoldReason.GAS_CAP_JETTON_ATTACH,
        HoldReason.GAS_CAP_JETTON_TRANSFER_FEE,
    }
)
# Holds the monitoring rules alert on (`gas_cap_exceeded`, `rate_stale`).
ALERTED_HOLDS = GAS_CAP_HOLDS | {HoldReason.RATE_STALE}
