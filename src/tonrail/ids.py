"""Identifiers: a readable prefix and 128 bits of randomness, sortable by creation time."""

from __future__ import annotations

import secrets
import time

_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"


def _base36(value: int, width: int) -> str:
    out = []
    for _ in range(width):
        value, rem = divmod(value, 36)
        out.append(_ALPHABET[rem])
    return "".join(reversed(out))


def new_id(prefix: str) -> str:
    """`{prefix}_{time}{random}`: a millisecond timestamp first so ids sort by creation."""
    ms = time.time_ns() // 1_000_000
    return f"{prefix}_{_base36(ms, 9)}{_base36(secrets.randbits(80), 16)}"
