"""Identifiers: a readable prefix and 128 bits of randomness, sortable by creation time."""

from __future__ import annotations

import os
import threading
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


_RANDOM_BYTES = 10  # 80 bits of an id
_POOL_BYTES = 4096  # read from the OS at once: one system call per ~400 ids, not one each
_pool = b""
_taken = 0
_lock = threading.Lock()  # ids are made in worker threads too: a byte goes to one id only


def _forget_pool() -> None:
    """In a forked child: never hand out bytes the parent (or a sibling) may hand out too."""
    global _pool, _taken, _lock
    _pool, _taken, _lock = b"", 0, threading.Lock()


os.register_at_fork(after_in_child=_forget_pool)


def _random80() -> int:
    """80 random bits from the OS's CSPRNG (`os.urandom`, as `secrets` uses), drawn from a
    pool so that not every id costs a system call; each byte is used once."""
    global _pool, _taken
    with _lock:
        if _taken + _RANDOM_BYTES > len(_pool):
            _pool, _taken = os.urandom(_POOL_BYTES), 0
        start = _taken
        _taken = start + _RANDOM_BYTES
        pool = _pool
    return int.from_bytes(pool[start : start + _RANDOM_BYTES], "big")


def new_id(prefix: str) -> str:
    """`{prefix}_{time}{random}`: a millisecond timestamp first so ids sort by creation."""
    ms = time.time_ns() // 1_000_000
    return f"{prefix}_{_base36(ms, 9)}{_base36(_random80(), 16)}"
