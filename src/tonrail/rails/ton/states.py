"""The statuses of the TON rail's own records: highload requests, their transfers, deposits.

`StrEnum`s whose values are the strings stored in the database (no migration needed).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final


class RequestStatus(StrEnum):
    """A signed highload request: signed -> sent -> processed -> final, or expired."""

    SIGNED = "signed"
    SENT = "sent"
    # The wallet processed it (query_id marked); its transfers' outcomes may still be open.
    PROCESSED = "processed"
    # Every transfer's outcome is recorded.
    FINAL = "final"
    EXPIRED = "expired"


class TransferStatus(StrEnum):
    """One payout's message inside a request: pending -> sent -> confirmed | bounced;
    pending -> not_sent when the wallet processed the request without sending it."""

    PENDING = "pending"
    SENT = "sent"
    NOT_SENT = "not_sent"
    CONFIRMED = "confirmed"
    BOUNCED = "bounced"


class TraceStatus(StrEnum):
    """What the chain shows of one transfer's message: not there yet, delivered, bounced
    back, or failed in the wallet."""

    PENDING = "pending"
    CONFIRMED = "confirmed"
    BOUNCED = "bounced"
    FAILED = "failed"


class DepositStatus(StrEnum):
    """A transfer received on the deposit wallet, as matched against invoices."""

    CREDITED = "credited"
    UNDERPAID = "underpaid"
    OVERPAID = "overpaid"
    # For an invoice that had ended (expired or canceled) when the transfer arrived.
    LATE = "late"
    UNMATCHED = "unmatched"
    RESOLVED = "resolved"
    # AML/KYC screening of the sender (docs/COMPLIANCE.md): `review` holds a deposit that
    # would credit an invoice until an approver releases (or freezes) it; `blocked` freezes
    # it. Neither credits the merchant.
    HELD = "held"
    FROZEN = "frozen"


R, D = RequestStatus, DepositStatus
# Requests whose transfers may still move or be reported.
OPEN_REQUEST_STATES: Final[frozenset[RequestStatus]] = frozenset({R.SIGNED, R.SENT, R.PROCESSED})
# Deposits that credited an invoice (in full or in part).
CREDITING_DEPOSIT_STATES: Final[frozenset[DepositStatus]] = frozenset(
    {D.CREDITED, D.UNDERPAID, D.OVERPAID}
)
# Deposits that credited an invoice with another amount than it asked for (refundable).
OFF_AMOUNT_DEPOSIT_STATES: Final[frozenset[DepositStatus]] = frozenset({D.UNDERPAID, D.OVERPAID})
# Deposits an operator may still apply, refund or book as owner funding.
UNAPPLIED_DEPOSIT_STATES: Final[frozenset[DepositStatus]] = frozenset({D.UNMATCHED, D.LATE})
