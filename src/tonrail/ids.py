"""Identifiers: a readable prefix and 128 bits of randomness, sortable by creation time."""

from __future__ import annotations

import secrets
import time

_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"
# Every pair of base-36 digits, so a value is written two digits a step (ids are made on
# every write path: several per payout).
_PAIRS = tuple(a + b for a in _ALPHABET for b in _ALPHABET)


def _base36(value: int, width: int) -> str:
    """The lowest `width` base-36 digits of `value`, zero-padded."""
    out = []
    for _ in range(width // 2):
        value, rem = divmod(value, 1296)
        out.append(_PAIRS[rem])
    if width % 2:
        out.append(_ALPHABET[value % 36])
    return "".join(reversed(out))


def new_id(prefix: str) -> str:
    """`{prefix}_{time}{random}`: a millisecond timestamp first so ids sort by creation."""
    ms = time.time_ns() // 1_000_000
    return f"{prefix}_{_base36(ms, 9)}{_base36(secrets.randbits(80), 16)}"
