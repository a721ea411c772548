"""Fee quotes and conversions: exact integers, documented rounding, hypothesis-tested."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tonrail.rails.pricing import (
    FeeSchedule,
    convert_for_rail,
    fee_for,
    percentage_fee,
    within_max,
)
from tonrail.rates import Rate

STRIPE = FeeSchedule(bps=290, fixed=30, max_amount=10_000_000)
PAYPAL = FeeSchedule(bps=290, fixed=30, max_amount=10_000_000, international_bps=50)
BANK = FeeSchedule(bps=0, fixed=500, max_amount=100_000_000)
amounts = st.integers(min_value=0, max_value=10**15)


def test_deployment_guide_examples() -> None:
    assert fee_for(STRIPE, 10_000) == 320  # $100 -> $2.90 + $0.30
    assert fee_for(STRIPE, 1_000) == 59  # $10 -> $0.29 + $0.30
    assert fee_for(STRIPE, 1_234) == 66  # 35.786 -> 36 (half up) + 30
    assert fee_for(PAYPAL, 10_000, international=True) == 370  # 3.4 %
    assert fee_for(BANK, 100_000_000) == 500
    assert within_max(STRIPE, 10_000_000) and not within_max(STRIPE, 10_000_001)
    assert not within_max(BANK, 0)


@given(amounts, st.integers(min_value=0, max_value=10_000))
def test_percentage_is_exact_half_up(amount: int, bps: int) -> None:
    exact = Fraction(amount * bps, 10_000)
    fee = percentage_fee(amount, bps)
    assert isinstance(fee, int)
    assert -Fraction(1, 2) < fee - exact <= Fraction(1, 2)
    if exact.denominator <= 2 and (exact - int(exact)) == Fraction(1, 2):
        assert fee == int(exact) + 1  # ties go up


@given(amounts, amounts, st.booleans())
def test_fee_monotonic_and_at_least_fixed(a: int, b: int, intl: bool) -> None:
    lo, hi = sorted((a, b))
    assert PAYPAL.fixed <= fee_for(PAYPAL, lo, intl) <= fee_for(PAYPAL, hi, intl)
    assert fee_for(PAYPAL, hi, True) >= fee_for(PAYPAL, hi, False)


def test_negative_inputs_refused() -> None:
    with pytest.raises(ValueError):
        percentage_fee(-1, 290)
    with pytest.raises(ValueError):
        FeeSchedule(bps=-1, fixed=0, max_amount=1)


class Fixed:
    def __init__(self, **rates: str):
        self.rates = {k: Decimal(v) for k, v in rates.items()}

    def rate(self, asset: str) -> Rate:
        return Rate(self.rates[asset], datetime(2026, 1, 1, tzinfo=UTC), "test")


RATES = Fixed(TON="5.25", USDT="1", USD="1.0", EUR="1.08")


@given(st.integers(min_value=1, max_value=10**18), st.sampled_from(["in", "out"]))
def test_ton_to_usd_rounds_by_direction(nanoton: int, direction: str) -> None:
    c = convert_for_rail(RATES, nanoton, "TON", "USD", direction)  # type: ignore[arg-type]
    exact = Fraction(nanoton) * Fraction(525, 100) / 10**9 * 100
    if direction == "in":
        assert exact <= c.amount < exact + 1  # never under-collect
    else:
        assert abs(c.amount - exact) <= Fraction(1, 2)
    assert c.asset == "USD" and c.from_amount == nanoton and c.rate == "5.25"
    assert c.as_details()["rail_amount"] == c.amount


def test_same_asset_is_identity_and_eur_cross_rate() -> None:
    assert convert_for_rail(RATES, 1234, "USD", "USD", "in").amount == 1234
    c = convert_for_rail(RATES, 108_000_000, "USDT", "EUR", "out")  # 108 USDT
    assert c.amount == 10_000 and c.asset == "EUR"
