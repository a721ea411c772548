"""`rules.treasury_proposal_refused`: a treasury proposal the multisig refused, as pure lines
(processing/treasury_loop.py books it with the payout's failure)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tonrail.ledger import rules as books

NANOTON = st.integers(min_value=0, max_value=10**18)


@given(NANOTON, NANOTON)
def test_what_the_hot_wallet_lost_leaves_it_in_balanced_ton_lines(a: int, b: int) -> None:
    kept, lost = sorted((a, b))
    lines = books.treasury_proposal_refused(lost, kept)
    assert books.imbalance(lines) == {}
    assert {line.asset for line in lines} <= {"TON"}
    assert all(isinstance(line.amount, int) and line.amount for line in lines)
    by_account = {line.account: line.amount for line in lines}
    assert by_account.get(books.HOT_WALLET, 0) == -lost
    assert by_account.get(books.TREASURY, 0) == kept
    assert by_account.get(books.NETWORK_FEES, 0) == lost - kept


def test_the_part_the_multisig_kept_goes_to_the_treasury_the_rest_to_fees() -> None:
    assert books.treasury_proposal_refused(1_874_475, 249_201) == [
        books.Line(books.TREASURY, "TON", 249_201),
        books.Line(books.NETWORK_FEES, "TON", 1_625_274),
        books.Line(books.HOT_WALLET, "TON", -1_874_475),
    ]
    # Nothing reached the multisig (the hot wallet could not send it): all of it is fees.
    assert books.treasury_proposal_refused(5, 0) == [
        books.Line(books.NETWORK_FEES, "TON", 5),
        books.Line(books.HOT_WALLET, "TON", -5),
    ]


@pytest.mark.parametrize(("lost", "kept"), [(5, 6), (5, -1)])
def test_the_multisig_cannot_keep_more_than_was_lost_or_less_than_nothing(
    lost: int, kept: int
) -> None:
    with pytest.raises(ValueError):
        books.treasury_proposal_refused(lost, kept)
