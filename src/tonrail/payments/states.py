"""The state machines of payments and attempts, as data, and the one check of every move.

The statuses themselves are the `StrEnum`s of `tonrail/states.py` (low in the layers, so the
rails' pure rules may read them too). `transitions.py` applies these rules to the database.
"""

from __future__ import annotations

from typing import Final, Literal

from tonrail.errors import IllegalTransition
from tonrail.states import (
    FAILED_ATTEMPT_STATES,
    FINAL_ATTEMPT_STATES,
    LIVE_ATTEMPT_STATES,
    AttemptStatus,
    PaymentStatus,
)

__all__ = [
    "ATTEMPT_TRANSITIONS",
    "FAILED_ATTEMPT_STATES",
    "FINAL_ATTEMPT_STATES",
    "INVOICE_TRANSITIONS",
    "LIVE_ATTEMPT_STATES",
    "PAYOUT_TRANSITIONS",
    "PENDING_PAYMENT_STATES",
    "RELEASING_PAYOUT_STATES",
    "TERMINAL_PAYMENT_STATES",
    "AttemptStatus",
    "Direction",
    "PaymentStatus",
    "check_attempt_transition",
    "check_payment_transition",
    "initial_status",
    "payment_transitions",
]

Direction = Literal["in", "out"]


P = PaymentStatus
A = AttemptStatus

# Payouts (direction "out"): approval gate, then the worker takes them through the rails.
PAYOUT_TRANSITIONS: Final[dict[str, frozenset[str]]] = {
    P.REQUIRES_APPROVAL: frozenset({P.QUEUED, P.CANCELED}),
    # -> requires_approval: held for a fresh rate (rate_holds.py), then valued above the
    # approval threshold.
    P.QUEUED: frozenset({P.PROCESSING, P.CANCELED, P.FAILED, P.REQUIRES_APPROVAL}),
    # A payout can only end once its live attempt has a final outcome (never cancel in flight).
    P.PROCESSING: frozenset({P.SUCCEEDED, P.FAILED, P.QUEUED}),
    P.SUCCEEDED: frozenset(),
    P.FAILED: frozenset(),
    P.CANCELED: frozenset(),
}

# Incoming payments / invoices (direction "in"): the customer pays or the invoice expires.
# processing: a backup rail is taking the payment, or a deposit waits for AML/KYC review
# (hold_reason screening_review; released short of the amount it is awaiting payment again);
# failed: a rail failed, or screening froze a deposit from a blocked sender.
INVOICE_TRANSITIONS: Final[dict[str, frozenset[str]]] = {
    P.AWAITING_PAYMENT: frozenset({P.PROCESSING, P.SUCCEEDED, P.EXPIRED, P.CANCELED, P.FAILED}),
    P.PROCESSING: frozenset({P.SUCCEEDED, P.FAILED, P.AWAITING_PAYMENT}),
    P.SUCCEEDED: frozenset(),
    P.FAILED: frozenset(),
    P.CANCELED: frozenset(),
    P.EXPIRED: frozenset(),
}

ATTEMPT_TRANSITIONS: Final[dict[str, frozenset[str]]] = {
    A.CREATED: frozenset({A.SUBMITTED, A.FAILED}),
    A.SUBMITTED: frozenset({A.CONFIRMED, A.FAILED, A.EXPIRED, A.UNKNOWN}),
    A.UNKNOWN: frozenset({A.CONFIRMED, A.FAILED, A.EXPIRED}),
    A.CONFIRMED: frozenset(),
    A.FAILED: frozenset(),
    A.EXPIRED: frozenset(),
}

TERMINAL_PAYMENT_STATES: Final[frozenset[PaymentStatus]] = frozenset(
    {P.SUCCEEDED, P.FAILED, P.CANCELED, P.EXPIRED}
)
# Payments the worker owes an outcome (the monitoring rule's "pending").
PENDING_PAYMENT_STATES: Final[tuple[PaymentStatus, ...]] = (P.QUEUED, P.PROCESSING)
# A payout ending in one of these never moved money: its reservation is released.
RELEASING_PAYOUT_STATES: Final[frozenset[PaymentStatus]] = frozenset({P.CANCELED, P.FAILED})


def initial_status(direction: Direction, needs_approval: bool) -> PaymentStatus:
    if direction == "in":
        return P.AWAITING_PAYMENT
    return P.REQUIRES_APPROVAL if needs_approval else P.QUEUED


def payment_transitions(direction: str) -> dict[str, frozenset[str]]:
    return PAYOUT_TRANSITIONS if direction == "out" else INVOICE_TRANSITIONS


def check_payment_transition(direction: str, current: str, target: str) -> None:
    """Raise IllegalTransition unless `current -> target` is a legal move for `direction`."""
    allowed = payment_transitions(direction).get(current)
    if allowed is None or target not in allowed:
        raise IllegalTransition(
            f"a {'payout' if direction == 'out' else 'payment'} in status '{current}' "
            f"cannot become '{target}'",
            param="status",
        )


def check_attempt_transition(current: str, target: str) -> None:
    """Raise IllegalTransition unless `current -> target` is a legal move of an attempt."""
    allowed = ATTEMPT_TRANSITIONS.get(current)
    if allowed is None or target not in allowed:
        raise IllegalTransition(f"an attempt in status '{current}' cannot become '{target}'")
