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


class RotationState(StrEnum):
    """A hot wallet rotation (`tonrail keys rotate-wallet`, processing/wallet_rotation.py):

    created -> paused -> drained -> sweep_signed -> swept -> deployed -> switched, or
    canceled before anything was signed for the sweep. The sweep funds the new wallet, so it
    is deployed after the sweep: an uninitialised wallet cannot pay for its own deployment.
    A sweep the chain did not execute as signed is booked as it happened (`sweep_failed`);
    an operator then chooses, with a second one approving (processing/rotation_recovery.py):
    a new sweep (back to `drained`), the switch without sweeping the rest (on to `swept`), or
    a cancel when nothing reached the new wallet."""

    CREATED = "created"  # new key sealed in its envelope file; the old wallet still signs
    PAUSED = "paused"  # the old wallet signs nothing new
    DRAINED = "drained"  # every request of the old wallet is final or proven expired
    SWEEP_SIGNED = "sweep_signed"  # the sweep message is stored; sent until valid_until
    SWEPT = "swept"  # the sweep is on chain and in the books
    # the sweep's trace ended otherwise than signed; what it did is booked; an operator
    # chooses the way on (SweepRecovery)
    SWEEP_FAILED = "sweep_failed"
    DEPLOYED = "deployed"  # the new wallet is active on chain
    SWITCHED = "switched"  # the key file holds the new wallet; workers sign with it
    CANCELED = "canceled"


RS = RotationState
# Moves a rotation may make, as data (the service refuses any other).
ROTATION_MOVES: Final[dict[RotationState, frozenset[RotationState]]] = {
    RS.CREATED: frozenset({RS.PAUSED, RS.CANCELED}),
    RS.PAUSED: frozenset({RS.DRAINED, RS.CANCELED}),
    RS.DRAINED: frozenset({RS.SWEEP_SIGNED, RS.CANCELED}),
    # back to drained when the sweep expired and is proven unprocessed: signed anew
    RS.SWEEP_SIGNED: frozenset({RS.SWEPT, RS.DRAINED, RS.SWEEP_FAILED}),
    # an approved way out of a failed sweep (booked as it happened): a new sweep from the
    # balances then, the switch leaving the rest on the old address, or (nothing reached
    # the new wallet) a cancel
    RS.SWEEP_FAILED: frozenset({RS.DRAINED, RS.SWEPT, RS.CANCELED}),
    RS.SWEPT: frozenset({RS.DEPLOYED}),
    RS.DEPLOYED: frozenset({RS.SWITCHED}),
    RS.SWITCHED: frozenset(),
    RS.CANCELED: frozenset(),
}
OPEN_ROTATION_STATES: Final[frozenset[RotationState]] = frozenset(
    s for s in RotationState if s not in (RS.SWITCHED, RS.CANCELED)
)
# While the rotation is in one of these, the old wallet signs no payout (once switched,
# never again).
OLD_WALLET_PAUSED_STATES: Final[frozenset[RotationState]] = frozenset(
    {RS.PAUSED, RS.DRAINED, RS.SWEEP_SIGNED, RS.SWEEP_FAILED, RS.SWEPT, RS.DEPLOYED, RS.SWITCHED}
)
# Once swept, what reaches the old wallet stays there (booked on the retired wallets).
SWEPT_ROTATION_STATES: Final[frozenset[RotationState]] = frozenset(
    {RS.SWEPT, RS.DEPLOYED, RS.SWITCHED}
)


class SweepRecovery(StrEnum):
    """The ways out of a failed sweep (`tonrail keys rotate-wallet --recover`), each asked by
    one operator and approved by another (processing/rotation_recovery.py)."""

    RESWEEP = "resweep"  # back to drained: a new sweep from the balances then
    SWITCH = "switch"  # switch to the new wallet; the rest stays on the old address
    CANCEL = "cancel"  # the old wallet signs again (only if nothing reached the new one)
