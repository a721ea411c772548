"""The state machines of payments and attempts, as data, and the one check of every move.

Statuses are `StrEnum`s whose values are the strings stored in the database, so a status
compares equal to its stored text and needs no migration. `transitions.py` applies these
rules to the database; no other module spells a status out.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final, Literal

from tonrail.errors import IllegalTransition

Direction = Literal["in", "out"]


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


P = PaymentStatus
A = AttemptStatus

# Payouts (direction "out"): approval gate, then the worker takes them through the rails.
PAYOUT_TRANSITIONS: Final[dict[str, frozenset[str]]] = {
    P.REQUIRES_APPROVAL: frozenset({P.QUEUED, P.CANCELED}),
    P.QUEUED: frozenset({P.PROCESSING, P.CANCELED, P.FAILED}),
    # A payout can only end once its live attempt has a final outcome (never cancel in flight).
    P.PROCESSING: frozenset({P.SUCCEEDED, P.FAILED, P.QUEUED}),
    P.SUCCEEDED: frozenset(),
    P.FAILED: frozenset(),
    P.CANCELED: frozenset(),
}

# Incoming payments / invoices (direction "in"): the customer pays or the invoice expires.
INVOICE_TRANSITIONS: Final[dict[str, frozenset[str]]] = {
    P.AWAITING_PAYMENT: frozenset({P.PROCESSING, P.SUCCEEDED, P.EXPIRED, P.CANCELED}),
    P.PROCESSING: frozenset({P.SUCCEEDED, P.FAILED}),
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

# An attempt in one of these states may still move money: no other attempt may start.
LIVE_ATTEMPT_STATES: Final[frozenset[AttemptStatus]] = frozenset(
    {A.CREATED, A.SUBMITTED, A.UNKNOWN}
)
# An attempt that ended without moving money: the payment may be tried again.
FAILED_ATTEMPT_STATES: Final[frozenset[AttemptStatus]] = frozenset({A.FAILED, A.EXPIRED})
FINAL_ATTEMPT_STATES: Final[frozenset[AttemptStatus]] = frozenset(
    {A.CONFIRMED, A.FAILED, A.EXPIRED}
)
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
