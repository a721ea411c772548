"""Identifiers: a readable prefix, a millisecond timestamp, then 16 random base-36 digits
(about 83 bits from the OS's CSPRNG); ids sort by creation time."""

from __future__ import annotations

import os
import threading
import time

_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"
# Every pair of base-36 digits, so a value is written two digits a step.
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


RANDOM_DIGITS = 16
# A random byte below 252 (= 7 * 36) is one uniform digit (its value mod 36); 252..255 are
# dropped rather than folded onto 0..3, which would make those digits likelier.
_DIGIT_OF_BYTE = bytes(ord(_ALPHABET[b % 36]) if b < 252 else 0 for b in range(256))
_DROPPED = bytes(range(252, 256))
_DRAW_BYTES = 20  # bytes drawn per try: 16 digits or more from all but ~1 draw in 5,000
_POOL_BYTES = 4096  # read from the OS at once: one system call per ~200 ids, not one each
_pool = b""
_taken = 0
_lock = threading.Lock()  # ids are made in worker threads too: a byte goes to one id only


def _forget_pool() -> None:
    """In a forked child: never hand out bytes the parent (or a sibling) may hand out too."""
    global _pool, _taken, _lock
    _pool, _taken, _lock = b"", 0, threading.Lock()


os.register_at_fork(after_in_child=_forget_pool)


def _random_bytes(n: int) -> bytes:
    """`n` random bytes from the OS's CSPRNG (`os.urandom`, as `secrets` uses), drawn from a
    pool so that not every id costs a system call; each byte is handed out once."""
    global _pool, _taken
    with _lock:
        if _taken + n > len(_pool):
            _pool, _taken = os.urandom(max(_POOL_BYTES, n)), 0
        start = _taken
        _taken = start + n
        pool = _pool
    return pool[start : start + n]


def _random_digits() -> str:
    """RANDOM_DIGITS independent, uniform base-36 digits."""
    digits = b""
    while len(digits) < RANDOM_DIGITS:
        digits += _random_bytes(_DRAW_BYTES).translate(_DIGIT_OF_BYTE, _DROPPED)
    return digits[:RANDOM_DIGITS].decode()


# The last millisecond's digits: under load many ids share one (a tuple, swapped whole, so
# a thread never pairs one millisecond with another's digits).
_last_ms: tuple[int, str] = (-1, "")


def new_id(prefix: str) -> str:
    """`{prefix}_{time}{random}`: a millisecond timestamp first so ids sort by creation."""
    global _last_ms
    ms = time.time_ns() // 1_000_000
    last = _last_ms
    if last[0] != ms:
        last = _last_ms = (ms, _base36(ms, 9))
    return f"{prefix}_{last[1]}{_random_digits()}"
