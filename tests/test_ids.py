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


def test_random_parts_never_repeat_across_pool_refills_threads_and_forks() -> None:
    """The random part comes from a pool of OS randomness: every byte serves one id, in any
    thread, and a forked child starts a pool of its own (else parent and child, or two
    workers forked from one parent, would make the same ids)."""
    import os
    from concurrent.futures import ThreadPoolExecutor

    from tonrail import ids

    made = [new_id("x")[11:] for _ in range(3 * ids._POOL_BYTES // ids._DRAW_BYTES)]
    with ThreadPoolExecutor(8) as pool:
        made += list(pool.map(lambda _: new_id("x")[11:], range(5000)))
    assert len(set(made)) == len(made)
    ids._random_bytes(1)  # the parent holds a partly used pool
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child's side
        os.write(write, ",".join(new_id("x")[11:] for _ in range(5)).encode())
        os._exit(0)
    os.close(write)
    os.waitpid(child, 0)
    theirs = os.read(read, 4096).decode().split(",")
    os.close(read)
    ours = [new_id("x")[11:] for _ in range(5)]
    assert len(theirs) == 5 and not set(theirs) & set(ours)


def test_random_digits_are_uniform() -> None:
    """Each of the 36 digits as likely as any other: bytes 252..255 are dropped, not folded
    onto 0..3 (which would make those digits about 14 % likelier, some 38 standard
    deviations here)."""
    from collections import Counter

    from tonrail.ids import RANDOM_DIGITS, _random_digits

    draws = 8_000
    counts = Counter("".join(_random_digits() for _ in range(draws)))
    expected = draws * RANDOM_DIGITS / 36  # 3,556 each
    assert set(counts) == set("0123456789abcdefghijklmnopqrstuvwxyz")
    # Chi-square with 35 degrees of freedom: above 80 about once in 40,000 runs.
    chi2 = sum((n - expected) ** 2 / expected for n in counts.values())
    assert chi2 < 80, counts
