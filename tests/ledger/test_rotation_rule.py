"""`rules.rotation_sweep`: the books of a hot wallet rotation's sweep, a failed one, and the
switch without one, as pure lines (processing/wallet_rotation.py, rotation_recovery.py)."""

from __future__ import annotations

from collections import defaultdict

from tonrail.ledger import rules as books

# The old wallet holds 10 TON and 7 USDT (an opening balance, on the other side of the books).
OPENING = [
    books.Line(books.HOT_WALLET, "TON", 10),
    books.Line(books.OPERATOR_TOP_UPS, "TON", -10),
    books.Line(books.HOT_WALLET, "USDT", 7),
    books.Line(books.OPERATOR_TOP_UPS, "USDT", -7),
]


def totals(*entries: list[books.Line]) -> dict[tuple[str, str], int]:
    out: dict[tuple[str, str], int] = defaultdict(int)
    for lines in entries:
        assert books.imbalance(lines) == {}
        for line in lines:
            out[(line.account, line.asset)] += line.amount
    return {k: v for k, v in out.items() if v and k[0] != books.OPERATOR_TOP_UPS}


def test_a_whole_sweep_makes_the_new_wallets_holdings_the_hot_wallets() -> None:
    # 9 TON left the old wallet: 8 arrived, 1 of fees; all the USDT arrived.
    opening = OPENING
    swept = books.rotation_sweep(
        held={"TON": 10, "USDT": 7},
        arrived={"TON": 8, "USDT": 7},
        fee=1,
        next_held={},
        retire=True,
    )
    assert totals(opening, swept) == {
        (books.HOT_WALLET, "TON"): 8,
        (books.HOT_WALLET, "USDT"): 7,
        (books.RETIRED_HOT_WALLETS, "TON"): 1,
        (books.NETWORK_FEES, "TON"): 1,
    }


def test_a_failed_sweep_then_a_new_one_or_the_switch_without_it() -> None:
    opening = OPENING
    # The TON landed (5 arrived, 1 of fees), the USDT transfer was refused.
    failed = books.rotation_sweep(
        held={}, arrived={"TON": 5, "USDT": 0}, fee=1, next_held={}, retire=False
    )
    assert totals(opening, failed) == {
        (books.HOT_WALLET, "TON"): 4,  # still the old wallet's: what did not leave
        (books.HOT_WALLET, "USDT"): 7,
        (books.NEXT_HOT_WALLET, "TON"): 5,
        (books.NETWORK_FEES, "TON"): 1,
    }
    # A new sweep: 2 TON and the USDT arrive, 1 of fees; the old wallet keeps 1 TON.
    again = books.rotation_sweep(
        held={"TON": 4, "USDT": 7},
        arrived={"TON": 2, "USDT": 7},
        fee=1,
        next_held={"TON": 5},
        retire=True,
    )
    assert totals(opening, failed, again) == {
        (books.HOT_WALLET, "TON"): 7,
        (books.HOT_WALLET, "USDT"): 7,
        (books.RETIRED_HOT_WALLETS, "TON"): 1,
        (books.NETWORK_FEES, "TON"): 2,
    }
    # Or the switch without sweeping the rest: it stays on the retired wallets.
    unswept = books.rotation_sweep(
        held={"TON": 4, "USDT": 7}, arrived={}, fee=0, next_held={"TON": 5}, retire=True
    )
    assert totals(opening, failed, unswept) == {
        (books.HOT_WALLET, "TON"): 5,
        (books.RETIRED_HOT_WALLETS, "TON"): 4,
        (books.RETIRED_HOT_WALLETS, "USDT"): 7,
        (books.NETWORK_FEES, "TON"): 1,
    }
