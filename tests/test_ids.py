"""Identifiers: prefix, time and randomness in base 36."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from tonrail.ids import _base36, new_id


@given(st.integers(min_value=0, max_value=2**100), st.integers(min_value=1, max_value=20))
def test_base36_is_the_lowest_digits_zero_padded(value: int, width: int) -> None:
    text = _base36(value, width)
    assert len(text) == width
    assert re.fullmatch("[0-9a-z]+", text)
    assert int(text, 36) == value % 36**width


def test_ids_have_their_prefix_and_sort_by_creation() -> None:
    assert _base36(0, 3) == "000"
    assert _base36(1295, 3) == "0zz"
    assert _base36(36**9 - 1, 9) == "zzzzzzzzz"
    made = [new_id("pay") for _ in range(50)]
    assert all(re.fullmatch("pay_[0-9a-z]{25}", i) for i in made)
    assert len(set(made)) == 50
    assert [i[:13] for i in made] == sorted(i[:13] for i in made)  # the time part
