"""Every move of the state machines: the legal ones pass, every other one is refused."""

from __future__ import annotations

import itertools

import pytest

from tonrail.errors import IllegalTransition
from tonrail.payments.states import (
    ATTEMPT_TRANSITIONS,
    INVOICE_TRANSITIONS,
    PAYOUT_TRANSITIONS,
    TERMINAL_PAYMENT_STATES,
    check_attempt_transition,
    check_payment_transition,
    initial_status,
)

ALL_PAYMENT = sorted(set(PAYOUT_TRANSITIONS) | set(INVOICE_TRANSITIONS) | {"bogus"})


@pytest.mark.parametrize(
    ("direction", "table"), [("out", PAYOUT_TRANSITIONS), ("in", INVOICE_TRANSITIONS)]
)
def test_every_payment_move(direction: str, table: dict[str, frozenset[str]]) -> None:
    legal = illegal = 0
    for current, target in itertools.product(ALL_PAYMENT, repeat=2):
        if target in table.get(current, frozenset()):
            check_payment_transition(direction, current, target)
            legal += 1
        else:
            with pytest.raises(IllegalTransition):
                check_payment_transition(direction, current, target)
            illegal += 1
    assert legal == sum(len(v) for v in table.values())
    assert illegal > legal


def test_every_attempt_move() -> None:
    states = [*ATTEMPT_TRANSITIONS, "bogus"]
    for current, target in itertools.product(states, repeat=2):
        if target in ATTEMPT_TRANSITIONS.get(current, frozenset()):
            check_attempt_transition(current, target)
        else:
            with pytest.raises(IllegalTransition):
                check_attempt_transition(current, target)


def test_terminal_states_are_final() -> None:
    for table in (PAYOUT_TRANSITIONS, INVOICE_TRANSITIONS):
        for state in TERMINAL_PAYMENT_STATES & set(table):
            assert table[state] == frozenset()
    for state in ("confirmed", "failed", "expired"):
        assert ATTEMPT_TRANSITIONS[state] == frozenset()


def test_in_flight_payout_cannot_be_canceled() -> None:
    with pytest.raises(IllegalTransition):
        check_payment_transition("out", "processing", "canceled")


def test_unknown_attempt_must_be_resolved_not_retried() -> None:
    assert "submitted" not in ATTEMPT_TRANSITIONS["unknown"]
    assert "created" not in ATTEMPT_TRANSITIONS["unknown"]


def test_initial_status() -> None:
    assert initial_status("out", False) == "queued"
    assert initial_status("out", True) == "requires_approval"
    assert initial_status("in", False) == "awaiting_payment"
