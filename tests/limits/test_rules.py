"""Pure limit rules."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tonrail.errors import AmountOutOfRange
from tonrail.limits.rules import (
    AssetLimits,
    LimitPolicy,
    approvals_satisfied,
    check_amount,
    fits_daily_volume,
    needs_approval,
)

POLICY = LimitPolicy(
    per_asset={"USDT": AssetLimits(10, 1000)},
    approval_threshold_usdt=500,
    approvals_required=2,
    daily_volume_limit_usdt=2000,
)


def test_amount_range_edges() -> None:
    check_amount(POLICY, "USDT", 10)
    check_amount(POLICY, "USDT", 1000)
    with pytest.raises(AmountOutOfRange) as small:
        check_amount(POLICY, "USDT", 9)
    assert small.value.code == "amount_too_small"
    with pytest.raises(AmountOutOfRange) as large:
        check_amount(POLICY, "USDT", 1001)
    assert large.value.code == "amount_too_large"


def test_approval_threshold_is_strictly_above() -> None:
    assert not needs_approval(POLICY, 500)
    assert needs_approval(POLICY, 501)


def test_requester_and_duplicates_do_not_count() -> None:
    assert not approvals_satisfied(POLICY, "a", ["a", "b"])
    assert not approvals_satisfied(POLICY, "a", ["b", "b"])
    assert approvals_satisfied(POLICY, "a", ["b", "c"])
    assert approvals_satisfied(POLICY, "a", ["a", "b", "c"])


@given(used=st.integers(0, 3000), amount=st.integers(0, 3000))
def test_daily_volume_fits_iff_total_within_limit(used: int, amount: int) -> None:
    assert fits_daily_volume(POLICY, used, amount) == (used + amount <= 2000)
