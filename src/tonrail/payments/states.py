"""The state machines of payments and attempts, as data, and the one check of every move."""

from __future__ import annotations

from typing import Final, Literal

from tonrail.errors import IllegalTransition

Direction = Literal["in", "out"]
PaymentStatus = Literal[
    "requires_approval",
    "queued",
    "processing",
    "awaiting_payment",
    "succeeded",
    "failed",
    "canceled",
    "expired",
]
AttemptStatus = Literal["created", "submitted", "unknown", "confirmed", "failed", "expired"]

# Payouts (direction "out"): approval gate, then the worker takes them through the rails.
PAYOUT_TRANSITIONS: Final[dict[str, frozenset[str]]] = {
    "requires_approval": frozenset({"queued", "canceled"}),
    "queued": frozenset({"processing", "canceled", "failed"}),
    # A payout can only end once its live attempt has a final outcome (never cancel in flight).
    "processing": frozenset({"succeeded", "failed", "queued"}),
    "succeeded": frozenset(),
    "failed": frozenset(),
    "canceled": frozenset(),
}

# Incoming payments / invoices (direction "in"): the customer pays or the invoice expires.
INVOICE_TRANSITIONS: Final[dict[str, frozenset[str]]] = {
    "awaiting_payment": frozenset({"processing", "succeeded", "expired", "canceled"}),
    "processing": frozenset({"succeeded", "failed"}),
    "succeeded": frozenset(),
    "failed": frozenset(),
    "canceled": frozenset(),
    "expired": frozenset(),
}

ATTEMPT_TRANSITIONS: Final[dict[str, frozenset[str]]] = {
    "created": frozenset({"submitted", "failed"}),
    # "unknown": the outcome cannot be known yet; it must be resolved before anything else.
    "submitted": frozenset({"confirmed", "failed", "expired", "unknown"}),
    "unknown": frozenset({"confirmed", "failed", "expired"}),
    "confirmed": frozenset(),
    "failed": frozenset(),
    "expired": frozenset(),
}

# An attempt in one of these states may still move money: no other attempt may start.
LIVE_ATTEMPT_STATES: Final[frozenset[str]] = frozenset({"created", "submitted", "unknown"})
TERMINAL_PAYMENT_STATES: Final[frozenset[str]] = frozenset(
    {"succeeded", "failed", "canceled", "expired"}
)


def initial_status(direction: Direction, needs_approval: bool) -> PaymentStatus:
    if direction == "in":
        return "awaiting_payment"
    return "requires_approval" if needs_approval else "queued"


def payment_transitions(direction: str) -> dict[str, frozenset[str]]:
    return PAYOUT_TRANSITIONS if direction == "out" else INVOICE_TRANSITIONS


def check_payment_transition(direction: str, current: str, target: str) -> None:
    """Raise IllegalTransition unless `current -> target` is a legal move for `direction`."""
    allowed = payment_transitions(direction).get(current)
    if allowed is None or target not in allowed:
        raise IllegalTransition(
            f"a {'payout' if direction == 'out' else 'payment'} in status {current!r} "
            f"cannot become {target!r}",
            param="status",
        )


def check_attempt_transition(current: str, target: str) -> None:
    allowed = ATTEMPT_TRANSITIONS.get(current)
    if allowed is None or target not in allowed:
        raise IllegalTransition(f"an attempt in status {current!r} cannot become {target!r}")
